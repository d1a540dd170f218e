//! The documentation keeps up with the binary: every subcommand and flag `--help` shows is in
//! the README or `docs/`, and every relative link in them resolves (files, and headings named
//! after `#`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README and every page of `docs/`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

fn help(args: &[&str]) -> String {
    let output = common::chokepoint(args);
    assert!(output.status.success(), "{args:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The subcommands `chokepoint --help` lists.
fn subcommands() -> Vec<String> {
    let text = help(&["--help"]);
    let listed = text
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands section");
    // A command's line starts two spaces in; its description's next lines, further.
    listed
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The long flags a `--help` text defines: the lines that start with one (after `-x, `).
fn flags(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            let long = line.split_whitespace().find(|w| w.starts_with("--"))?;
            let name: String = long
                .trim_start_matches("--")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .filter(|flag| !matches!(flag.as_str(), "--help" | "--version"))
        .collect()
}

#[test]
fn every_subcommand_and_flag_in_help_is_documented() {
    let docs: String = pages()
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    let mut missing = Vec::new();
    let commands = subcommands();
    assert!(commands.len() >= 12, "{commands:?}");
    for command in &commands {
        if !docs.contains(&format!("chokepoint {command}")) {
            missing.push(format!("chokepoint {command}"));
        }
        for flag in flags(&help(&[command, "--help"])) {
            // A flag is documented when the docs name it, followed by something other than a
            // letter (so `--pg` is not found inside `--pg-watch`).
            let named = docs.match_indices(&flag).any(|(at, _)| {
                !docs[at + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            });
            if !named {
                missing.push(format!("chokepoint {command} {flag}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in the README or docs/: {missing:#?}");
}

/// GitHub's anchor of a heading: lower case, punctuation dropped but `-` and `_`, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The relative link targets of a Markdown text: `[label](target)` and `![alt](target)`, outside
/// code blocks.
fn links(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") && !target.contains(' ') {
                targets.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let dir = page.parent().expect("a folder");
        for target in links(&text) {
            checked += 1;
            let (file, heading) = match target.split_once('#') {
                Some((file, heading)) => (file, Some(heading)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no {})", page.display(), path.display()));
                continue;
            }
            if let Some(heading) = heading {
                let headings: BTreeSet<String> = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(|l| anchor(l.trim_start_matches('#')))
                    .collect();
                if !headings.contains(heading) {
                    broken.push(format!("{}: {target} (no heading #{heading})", page.display()));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links read");
    assert!(broken.is_empty(), "{broken:#?}");
}
