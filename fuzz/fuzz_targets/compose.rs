//! Front matter + shortcodes + Markdown -> compose, with the built-in layout.
//!
//! An input whose first byte is even is the whole issue file (front matter
//! fuzzed too); otherwise the rest is the body under a valid front matter,
//! so most inputs reach shortcodes, Markdown and mrml. The content root
//! holds a few snippets to `include_md`, one of which includes another.
//!
//! What must hold for every input: no panic, no abort (stack overflow,
//! out of memory), no hang; an error names a file; a composed issue
//! personalises and its stored form reads back the same.

#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use letterpress_composer::{Composer, ComposerSettings, Newsletter, Recipient, SendableIssue};
use libfuzzer_sys::fuzz_target;

struct Site {
    root: PathBuf,
    composer: Composer,
}

static SITE: LazyLock<Site> = LazyLock::new(|| {
    let root = std::env::temp_dir().join(format!("letterpress-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(root.join("snippets")).expect("fuzz content root");
    for (name, text) in [
        (
            "snippets/a.md",
            "A *snippet* with [a link](/x/).\n\n{{ include_md(path=\"snippets/b.md\") }}\n",
        ),
        (
            "snippets/b.md",
            "> quoted {{ subscriber_name(fallback=\"friend\") }}\n\n- one\n- two\n",
        ),
        ("snippets/c.md", "<div><p>raw <b>html</b></p></div>\n"),
    ] {
        std::fs::write(root.join(name), text).expect("fuzz snippet");
    }
    let composer = Composer::new(ComposerSettings {
        content_root: root.clone(),
        issue_url: "https://example.com/newsletter/{slug}/".into(),
        template: None,
        newsletter: Newsletter {
            name: "Fuzz Weekly".into(),
            postal_address: "Street 1\nTown".into(),
        },
    })
    .expect("composer");
    Site { root, composer }
});

fuzz_target!(|data: &[u8]| {
    let site = &*SITE;
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let bytes = if first % 2 == 0 {
        rest.to_vec()
    } else {
        let mut b = b"+++\ntitle = \"Fuzz\"\n+++\n".to_vec();
        b.extend_from_slice(rest);
        b
    };
    let path = site.root.join("issue.md");
    match site.composer.compose_bytes(&path, bytes) {
        Ok(composed) => {
            let (html, text) = composed.personalize(&Recipient {
                email: "reader@example.com",
                name: Some("Ferris"),
                unsubscribe_url: "https://example.com/u/TOKEN",
            });
            assert!(html.contains("https://example.com/u/TOKEN"));
            assert!(!text.is_empty());
            let stored = composed.issue.to_stored();
            let back = SendableIssue::from_stored(&stored).expect("stored form reads back");
            assert_eq!(back.to_stored(), stored);
        }
        Err(e) => {
            assert!(e.location().is_some(), "an error without a file: {e}");
        }
    }
});
