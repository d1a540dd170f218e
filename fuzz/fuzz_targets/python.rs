//! Any bytes as Python source, through the scan's front end (Ruff's parser, the tree the rules
//! read, every rule) to its shapes. Never a panic; every shape is at a line and column of the
//! text, with its excerpt from that line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (shapes, _) = chokepoint_scan::scan_text("fuzz/views.py", text);
    // Python ends a line at `\n`, `\r\n` or a lone `\r`.
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count() as u32;
    for shape in &shapes {
        assert!(shape.line >= 1 && shape.line <= lines, "line {} of {lines}", shape.line);
        assert!(shape.column >= 1);
        assert!(!shape.fix.is_empty());
    }
});
