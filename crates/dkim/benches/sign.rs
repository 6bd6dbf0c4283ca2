//! `cargo bench -p letterpress-dkim` (or `make bench-dkim`, which runs
//! `openssl speed -seconds 3 rsa2048` right after, for the physical
//! reference): what DKIM costs per message, next to what its parts cost
//! alone, in one run.
//!
//! * `sign 35 KB, rsa-sha256`: [`Signer::sign`] of a 35 KB multipart
//!   message (the seed issue's messages are 35,153 bytes): relaxed body
//!   hash, header canonicalisation, one RSA-2048 signature, folding;
//! * `sign 35 KB, rsa-sha256 + ed25519-sha256`: the same with the
//!   co-signature;
//! * `bare RSA-2048 signature`: aws-lc-rs's PKCS#1 v1.5 signature of a
//!   SHA-256 digest, what `openssl speed rsa2048` measures;
//! * `SHA-256 of 35 KB`: the hashing floor of the body hash.
//!
//! Target (issue #11): per message ≤ 1.3 × `openssl speed rsa2048`'s sign
//! time, plus the few µs of hashing 35 KB.
//!
//! Every figure is CPU time of the benchmarking thread
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall time: `openssl speed` divides by
//! user CPU time unless given `-elapsed`, and the contract's target is CPU
//! per message. On this shared 2-core machine wall time also counts the
//! time other processes hold the core, which openssl's figure leaves out.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use criterion::{Bencher, Criterion, criterion_group, criterion_main};
use letterpress_dkim::{Ed25519Key, RsaKey, Signer};

const HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
    "MIME-Version",
    "Content-Type",
];

/// A message shaped like letterpress's: its header fields, then a
/// multipart/alternative body of a quoted-printable text part and a
/// quoted-printable HTML part whose lines are indented (runs of spaces that
/// relaxed canonicalisation collapses), about 35 KB in all.
fn message() -> Vec<u8> {
    let mut m = String::with_capacity(36 * 1024);
    m.push_str(
        "From: Rust Trends <news@rust-trends.com>\r\n\
         To: =?utf-8?q?Ann_M=C3=BCller?= <ann@x.example>\r\n\
         Subject: Rust Trends #58: async closures, a faster compiler and what\r\n \
         the 2024 edition brings\r\n\
         Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
         Message-ID: <0c1f4f0e5a3b4c2d9e8f7a6b5c4d3e2f@rust-trends.com>\r\n\
         List-Id: Rust Trends <news.rust-trends.com>\r\n\
         List-Unsubscribe: <https://rust-trends.com/u/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\
         Feedback-ID: issue-58:news.rust-trends.com:newsletter:letterpress\r\n\
         Precedence: bulk\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"=_q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5\"\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         \r\n\
         --=_q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    let words = "the compiler now checks async closures in the same pass as ordinary ones, \
                 which makes Gr=C3=BC=C3=9Fe builds faster and error messages clearer for everyone ";
    let mut text_len = 0;
    while text_len < 9_000 {
        let line = &words[text_len % 40..text_len % 40 + 75];
        m.push_str(line);
        m.push_str("=\r\n");
        text_len += line.len() + 3;
    }
    m.push_str(
        "\r\n--=_q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n",
    );
    let cells = [
        "<td style=3D\"padding:0 24px;font-family:Helvetica,Arial,sans-serif;font-=",
        "size:16px;line-height:1.5;color:#1f2328\">",
        "<p>The compiler now checks async closures in the same pass as ordinary=",
        " ones.</p>",
        "</td>",
    ];
    let mut i = 0;
    while m.len() < 35_000 {
        let indent = 4 * (1 + i % 6);
        m.push_str(&" ".repeat(indent));
        m.push_str(cells[i % cells.len()]);
        m.push_str("\r\n");
        i += 1;
    }
    m.push_str("\r\n--=_q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5--\r\n");
    m.into_bytes()
}

/// CPU time used by this thread so far.
#[cfg(unix)]
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall time where there is no thread CPU clock.
#[cfg(not(unix))]
fn cpu_time() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// `f` timed in CPU time of this thread.
fn cpu<O>(b: &mut Bencher<'_>, mut f: impl FnMut() -> O) {
    b.iter_custom(|iters| {
        let start = cpu_time();
        for _ in 0..iters {
            black_box(f());
        }
        cpu_time() - start
    });
}

fn benches(c: &mut Criterion) {
    let message = message();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let rsa_pem = RsaKey::generate()
        .and_then(|k| k.to_pkcs8_pem())
        .expect("RSA key");
    let rsa = || RsaKey::from_pem(&rsa_pem).expect("RSA key");
    let ed = Ed25519Key::generate().expect("Ed25519 key");
    let rsa_only = Signer::new("rust-trends.com", "lp2026", rsa(), HEADERS).expect("signer");
    let both = Signer::new("rust-trends.com", "lp2026", rsa(), HEADERS)
        .and_then(|s| s.co_sign("lp2026e", ed))
        .expect("signer");
    let bare = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
    let hashed = digest(&SHA256, b"the header data of one message");
    let mut signature = vec![0u8; bare.public_modulus_len()];

    let kb = message.len() / 1000;
    let mut g = c.benchmark_group("dkim (CPU time)");
    g.bench_function(format!("sign {kb} KB, rsa-sha256"), |b| {
        cpu(b, || rsa_only.sign(black_box(&message), now).expect("sign"))
    });
    g.bench_function(format!("sign {kb} KB, rsa-sha256 + ed25519-sha256"), |b| {
        cpu(b, || both.sign(black_box(&message), now).expect("sign"))
    });
    g.bench_function(
        "bare RSA-2048 signature (PKCS#1 v1.5, SHA-256 digest)",
        |b| {
            cpu(b, || {
                bare.sign_digest(&RSA_PKCS1_SHA256, black_box(&hashed), &mut signature)
                    .expect("sign")
            })
        },
    );
    g.bench_function(format!("SHA-256 of {kb} KB"), |b| {
        cpu(b, || digest(&SHA256, black_box(&message)))
    });
    g.finish();
}

criterion_group!(dkim, benches);
criterion_main!(dkim);
