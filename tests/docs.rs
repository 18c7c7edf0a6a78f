//! The documentation holds together: every relative link in the Markdown files a user or a
//! contributor reads names a file of the repository, and its `#anchor` a heading of that file
//! (as GitHub makes anchors from headings); the README opens with the two commands a newcomer
//! runs, and stays within its length, detail living in `docs/` and the sub-READMEs.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The README's length target: the user's path, not every detail.
const README_MAX_LINES: usize = 600;

/// The Markdown files checked: these and every `docs/*.md`.
const FILES: &[&str] = &[
    "README.md",
    "ARCHITECTURE.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "bench/README.md",
    "fuzz/README.md",
    "client/README.md",
    "redis/README.md",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = FILES.iter().map(|file| root().join(file)).collect();
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text outside fenced code blocks, with inline code spans blanked out (a link written
/// inside backticks is not a link). Code spans may run over a line break.
fn prose(markdown: &str) -> String {
    let mut outside = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            outside.push('\n');
            continue;
        }
        if !fenced {
            outside.push_str(line);
        }
        outside.push('\n');
    }
    let chars: Vec<char> = outside.chars().collect();
    let mut text = String::with_capacity(outside.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            text.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The span ends at the next run of exactly as many backticks.
        let mut j = i + run;
        let mut end = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|&&c| c == '`').count();
                if other == run {
                    end = Some(j + other);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match end {
            Some(end) => {
                text.push_str(" code ");
                i = end;
            }
            None => {
                text.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    text
}

/// The anchors GitHub gives a file's headings: lowercased, punctuation dropped, spaces as
/// hyphens, and `-1`, `-2`, .. after a repeated one.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut anchors = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim();
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    anchors
}

/// The targets of the inline links `[text](target)` in a file's prose.
fn links(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut links = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            let target = rest[..end].trim();
            if !target.is_empty() && !target.contains(char::is_whitespace) {
                links.push(target.to_owned());
            }
        }
    }
    links
}

fn broken_links(file: &Path) -> Vec<String> {
    let markdown = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut broken = Vec::new();
    for link in links(&markdown) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match link.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (link.as_str(), None),
        };
        let target = match path {
            "" => file.to_path_buf(),
            path => file.parent().expect("a file has a folder").join(path),
        };
        if !target.exists() {
            broken.push(format!("{link}: no such file"));
            continue;
        }
        let markdown_target = target.extension().is_some_and(|ext| ext == "md");
        if let (Some(anchor), true) = (anchor, markdown_target) {
            let headings = fs::read_to_string(&target).expect("a Markdown file is text");
            if !anchors(&headings).contains(anchor) {
                broken.push(format!("{link}: no heading with that anchor"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for file in markdown_files() {
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        broken.extend(
            broken_links(&file)
                .into_iter()
                .map(|b| format!("{name}: {b}")),
        );
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_opens_with_the_two_commands_and_keeps_its_length() {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let opening: String = readme.lines().take(20).collect::<Vec<_>>().join("\n");
    for command in [
        "cargo run --example hello",
        "cargo test --workspace --all-features",
    ] {
        assert!(
            opening.contains(command),
            "the README's first 20 lines must give `{command}`"
        );
    }
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, over its {README_MAX_LINES}: move detail to docs/, a \
         sub-README or rustdoc, and link it"
    );
}

#[test]
fn the_checker_sees_links_anchors_and_code() {
    let page = "# Top\n## A `code` heading\n## Top\nSee [b](#a-code-heading), [c](#top-1).\n\
                `[not](a-link)` and ``[nor](this\none)``\n```\n[fenced](x)\n```\n";
    assert_eq!(links(page), ["#a-code-heading", "#top-1"]);
    let found = anchors(page);
    for anchor in ["top", "a-code-heading", "top-1"] {
        assert!(found.contains(anchor), "{anchor} in {found:?}");
    }
}
