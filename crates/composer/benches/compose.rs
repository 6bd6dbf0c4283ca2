//! `cargo bench -p letterpress-composer`: composing the seed issue and
//! personalising one message (targets: <= 5 ms and <= 2 µs).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use letterpress_composer::{Composer, ComposerSettings, Newsletter, Recipient};

/// The corpus seed issue when `../shared/corpus` exists, else the bundled example.
fn seed() -> (PathBuf, PathBuf) {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let corpus = workspace.join("../shared/corpus");
    if corpus.join("seed-issue.md").is_file() {
        (corpus.join("seed-issue.md"), corpus.join("rust-trends"))
    } else {
        (
            workspace.join("examples/issue.md"),
            workspace.join("examples"),
        )
    }
}

fn benches(c: &mut Criterion) {
    let (issue, root) = seed();
    let composer = Composer::new(ComposerSettings {
        content_root: root,
        issue_url: "https://rust-trends.com/newsletter/{slug}/".into(),
        template: None,
        newsletter: Newsletter {
            name: "Rust Trends".into(),
            postal_address: "Example Street 1, Amsterdam".into(),
            language: Default::default(),
        },
    })
    .expect("composer");

    c.bench_function("compose seed issue", |b| {
        b.iter(|| composer.compose_file(black_box(&issue)).expect("compose"))
    });

    let composed = composer.compose_file(&issue).expect("compose");
    let recipient = Recipient {
        email: "reader@example.com",
        name: Some("Ada Lovelace"),
        unsubscribe_url: "https://news.example.com/u/eyJzIjoxMjM0NTYsImkiOjY5fQ.c2lnbmF0dXJl",
    };
    // One message = both parts, written into buffers that are reused as a sender would.
    let mut html = String::with_capacity(composed.issue.html.len() + 256);
    let mut text = String::with_capacity(composed.issue.text.len() + 256);
    c.bench_function("personalise one message", |b| {
        b.iter(|| {
            html.clear();
            text.clear();
            composed
                .issue
                .html
                .render_into(black_box(&recipient), &mut html);
            composed
                .issue
                .text
                .render_into(black_box(&recipient), &mut text);
            black_box((html.len(), text.len()))
        })
    });
}

criterion_group!(compose, benches);
criterion_main!(compose);
