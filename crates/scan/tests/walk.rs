//! What a scan reads of a tree: `.gitignore`, the default skips, `--exclude`, the size limit,
//! encodings, syntax errors, symlink loops, `# chokepoint: ignore` and `[tool.chokepoint]`.

use std::path::Path;

use chokepoint_evidence::{DetectorId, Severity};
use chokepoint_scan::{Options, scan};

const BLOCKING: &str = "import time\nasync def handler():\n    time.sleep(1)\n";

fn write(root: &Path, path: &str, text: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("a folder");
    std::fs::write(path, text).expect("written");
}

fn files_with_shapes(root: &Path, options: &Options) -> Vec<String> {
    let scanned = scan(&[root.to_path_buf()], options);
    let prefix = format!("{}/", root.display());
    let mut files: Vec<String> = scanned
        .scan
        .shapes
        .iter()
        .map(|s| s.file.trim_start_matches(&prefix).to_owned())
        .collect();
    files.dedup();
    files
}

#[test]
fn ignored_skipped_and_excluded_paths_are_not_read() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    for path in [
        "app/views.py",
        "app/generated_pb2.py",
        "build/lib/app.py",
        ".venv/lib/site.py",
        "env/lib/x.py",
        "app/migrations/0001_initial.py",
        "tests/test_views.py",
        "app/test_models.py",
        "scripts/backfill.py",
        "ignored/x.py",
    ] {
        write(root, path, BLOCKING.as_bytes());
    }
    write(root, "env/pyvenv.cfg", b"home = /usr/bin\n");
    write(root, ".gitignore", b"ignored/\n");
    let options = Options {
        exclude: vec!["scripts/**".to_owned()],
        ..Options::default()
    };
    assert_eq!(
        files_with_shapes(root, &options),
        ["app/generated_pb2.py", "app/views.py"]
    );
    let everything = Options {
        default_excludes: false,
        ..Options::default()
    };
    assert!(files_with_shapes(root, &everything).len() > 5);
}

#[test]
fn what_cannot_be_read_is_said_and_the_rest_scanned() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    write(root, "good.py", BLOCKING.as_bytes());
    write(
        root,
        "broken.py",
        format!("def f(:\n    pass\n{BLOCKING}").as_bytes(),
    );
    write(
        root,
        "latin.py",
        b"# -*- coding: latin-1 -*-\nname = '\xe9'\nimport time\nasync def h():\n    time.sleep(1)\n",
    );
    write(root, "binary.py", b"x = '\xff\xfe'\n");
    write(root, "huge.py", &vec![b'#'; 2048]);
    #[cfg(unix)]
    std::os::unix::fs::symlink(root, root.join("loop")).expect("a symlink");
    let options = Options {
        max_file_bytes: 1024,
        ..Options::default()
    };
    let scanned = scan(&[root.to_path_buf()], &options);
    let files = files_with_shapes(root, &options);
    assert_eq!(
        files,
        ["broken.py", "good.py", "latin.py"],
        "{:#?}",
        scanned.notes
    );
    let said = |file: &str, what: &str| {
        scanned
            .notes
            .iter()
            .any(|n| n.source.ends_with(file) && n.message.contains(what) && n.severity != Severity::Error)
    };
    assert!(said("broken.py", "syntax error"), "{:#?}", scanned.notes);
    assert!(
        scanned
            .notes
            .iter()
            .any(|n| n.source.ends_with("broken.py") && n.position.is_some())
    );
    assert!(said("binary.py", "not UTF-8"), "{:#?}", scanned.notes);
    assert!(said("huge.py", "limit"), "{:#?}", scanned.notes);
    #[cfg(unix)]
    assert!(
        scanned.notes.iter().any(|n| n.message.contains("loop")),
        "{:#?}",
        scanned.notes
    );
}

#[test]
fn comments_and_pyproject_silence_what_they_name() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let root = dir.path();
    write(
        root,
        "pyproject.toml",
        b"[project]\nname = \"shop\"\n\n[tool.chokepoint]\nexclude = [\"vendor/**\"]\ndisable = [\"sync-logging\"]\n\n[tool.chokepoint.per-path]\n\"admin/**\" = [\"blocking-call\"]\n",
    );
    write(root, "admin/views.py", BLOCKING.as_bytes());
    write(root, "vendor/lib.py", BLOCKING.as_bytes());
    write(
        root,
        "app.py",
        b"import time\nasync def a():\n    time.sleep(1)  # chokepoint: ignore[blocking-call]\nasync def b():\n    time.sleep(1)  # chokepoint: ignore[n-plus-one]\n",
    );
    let scanned = scan(&[root.to_path_buf()], &Options::default());
    let found: Vec<(String, u32, DetectorId)> = scanned
        .scan
        .shapes
        .iter()
        .map(|s| {
            (
                Path::new(&s.file)
                    .file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned(),
                s.line,
                s.detector,
            )
        })
        .collect();
    assert_eq!(
        found,
        [("app.py".to_owned(), 5, DetectorId::BlockingCall)],
        "{:#?}",
        scanned.notes
    );
    assert_eq!(scanned.suppressed, 1);
    // A broken pyproject is said, with its line, and the scan goes on without it.
    write(
        root,
        "pyproject.toml",
        b"[tool.chokepoint]\ndisable = [\"sync-logging\"\n",
    );
    let scanned = scan(&[root.to_path_buf()], &Options::default());
    assert!(
        scanned
            .notes
            .iter()
            .any(|n| n.source.ends_with("pyproject.toml") && n.position.is_some()),
        "{:#?}",
        scanned.notes
    );
    assert_eq!(scanned.scan.shapes.len(), 3);
}
