//! Prints what a scan finds (a development aid).
fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    let scanned = chokepoint_scan::scan(&paths, &chokepoint_scan::Options::default());
    for s in &scanned.scan.shapes {
        println!(
            "{}:{}:{} {} [{:?}] {} | {} | {:?}",
            s.file,
            s.line,
            s.column,
            s.detector,
            s.certainty,
            s.what,
            s.fix,
            s.handler.as_ref().map(|h| &h.routes)
        );
    }
    for n in &scanned.notes {
        println!("note: {n:?}");
    }
    println!("{} files, {} bytes", scanned.scan.files, scanned.scan.bytes);
}
