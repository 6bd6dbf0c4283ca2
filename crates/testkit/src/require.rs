//! The `LP_TEST_REQUIRE` switch: what a test does when something it needs
//! (a PostgreSQL server, dkimpy, the corpus, …) is not there.
//!
//! On a developer's machine a missing dependency skips the test, saying so
//! on stderr. In CI a skip would hide a test that never ran, so CI names
//! what it provides, `LP_TEST_REQUIRE=postgres,dkim,corpus`, and then a
//! missing one fails the test with what is missing and how to get it.
//! `all` names every [`Dependency`]. An unknown name fails every test that
//! asks, so a typo cannot turn the switch off.
//!
//! [`decide`] is the decision, a pure function over the variable's value;
//! [`missing`] reads the variable and carries the decision out.

use std::io::Write as _;

/// The variable that lists the dependencies a run requires.
pub const VAR: &str = "LP_TEST_REQUIRE";

/// Something outside the Rust toolchain that some tests need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    /// A PostgreSQL server, named by `TEST_DATABASE_URL`.
    Postgres,
    /// Python's dkimpy, the independent DKIM verifier.
    Dkim,
    /// The real issue corpus in `../shared/corpus`.
    Corpus,
    /// Postfix (an MTA to deliver through).
    Postfix,
    /// Dovecot (an IMAP mailbox for bounces).
    Dovecot,
    /// nginx (a reverse proxy in front of `serve`).
    Nginx,
    /// Headless Chromium (screenshots, pages as a browser shows them).
    Chromium,
    /// SpamAssassin (how a filter scores the messages).
    Spamassassin,
    /// A DNS server the tests control (DKIM, SPF and DMARC records).
    Dns,
    /// The openssl command (SNS message signatures in tests/serve/providers.rs).
    Openssl,
}

impl Dependency {
    /// Every dependency, as `all` names them.
    pub const ALL: [Dependency; 10] = [
        Dependency::Postgres,
        Dependency::Dkim,
        Dependency::Corpus,
        Dependency::Postfix,
        Dependency::Dovecot,
        Dependency::Nginx,
        Dependency::Chromium,
        Dependency::Spamassassin,
        Dependency::Dns,
        Dependency::Openssl,
    ];

    /// Its name in `LP_TEST_REQUIRE`.
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Postgres => "postgres",
            Dependency::Dkim => "dkim",
            Dependency::Corpus => "corpus",
            Dependency::Postfix => "postfix",
            Dependency::Dovecot => "dovecot",
            Dependency::Nginx => "nginx",
            Dependency::Chromium => "chromium",
            Dependency::Spamassassin => "spamassassin",
            Dependency::Dns => "dns",
            Dependency::Openssl => "openssl",
        }
    }

    /// How to get it, for the failure and skip messages.
    pub fn how_to_get(self) -> &'static str {
        match self {
            Dependency::Postgres => {
                "run a PostgreSQL server and set TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB \
                 with a user that may create databases (the tests make and drop their own), \
                 e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test"
            }
            Dependency::Dkim => {
                "python3 -m pip install dkimpy pynacl (into the user site, or with \
                 --target <cargo target dir>/pydeps)"
            }
            Dependency::Corpus => "put the corpus at ../shared/corpus, beside the checkout",
            Dependency::Postfix => "apt-get install postfix",
            Dependency::Dovecot => "apt-get install dovecot-imapd",
            Dependency::Nginx => "apt-get install nginx",
            Dependency::Chromium => "apt-get install chromium",
            Dependency::Spamassassin => "apt-get install spamassassin",
            Dependency::Dns => "apt-get install unbound (a resolver the tests configure)",
            Dependency::Openssl => "apt-get install openssl (the SNS test signs with RSA-SHA1)",
        }
    }
}

/// What becomes of a test whose dependency is missing.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It returns early; the line to print on stderr.
    Skip(String),
    /// It fails with this message.
    Fail(String),
}

/// The decision for a test that needs `dependency`, missing because of
/// `why`, when `LP_TEST_REQUIRE` is `require` (`None`: not set).
pub fn decide(require: Option<&str>, dependency: Dependency, why: &str) -> Outcome {
    let name = dependency.name();
    let how = dependency.how_to_get();
    let mut required = false;
    for entry in require.unwrap_or("").split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry.eq_ignore_ascii_case("all") || entry.eq_ignore_ascii_case(name) {
            required = true;
        } else if !Dependency::ALL
            .iter()
            .any(|d| entry.eq_ignore_ascii_case(d.name()))
        {
            let known: Vec<_> = Dependency::ALL.iter().map(|d| d.name()).collect();
            return Outcome::Fail(format!(
                "{VAR} names {entry:?}, which is no dependency the tests know: \
                 use `all` or some of {}",
                known.join(", ")
            ));
        }
    }
    if required {
        Outcome::Fail(format!(
            "{name} is required ({VAR}={}) but missing: {why}\nto get it: {how}",
            require.unwrap_or_default()
        ))
    } else {
        Outcome::Skip(format!(
            "skipped: {why} (needs {name}; {VAR}={name} makes this a failure)"
        ))
    }
}

/// Called by a test whose `dependency` is missing (`why` says how it is
/// missing), before it returns early: fails the test when `LP_TEST_REQUIRE`
/// requires it, else prints `skipped: …` straight to stderr, past the test
/// harness's capture, so a run without it says so.
pub fn missing(dependency: Dependency, why: &str) {
    let require = std::env::var(VAR).ok();
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(|n| format!("{n}: "))
        .unwrap_or_default();
    match decide(require.as_deref(), dependency, why) {
        Outcome::Skip(line) => {
            let _ = writeln!(std::io::stderr(), "{test}{line}");
        }
        Outcome::Fail(message) => panic!("{test}{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(o: &Outcome) -> bool {
        matches!(o, Outcome::Fail(_))
    }

    #[test]
    fn a_dependency_fails_only_when_named_or_all() {
        use Dependency::*;
        // (LP_TEST_REQUIRE, dependency, fails)
        let table = [
            (None, Postgres, false),
            (Some(""), Postgres, false),
            (Some("postgres"), Postgres, true),
            (Some("postgres"), Dkim, false),
            (Some("postgres,dkim,corpus"), Dkim, true),
            (Some("postgres,dkim,corpus"), Corpus, true),
            (Some("postgres,dkim,corpus"), Chromium, false),
            (Some(" postgres , DKIM "), Dkim, true),
            (Some("postgres,,"), Postgres, true),
            (Some("all"), Dns, true),
            (Some("all"), Postgres, true),
            (Some("ALL"), Spamassassin, true),
            (Some("corpus,all"), Nginx, true),
            (Some("postfix,dovecot,nginx"), Dovecot, true),
            (Some("postfix,dovecot,nginx"), Corpus, false),
        ];
        for (require, dep, fail) in table {
            let o = decide(require, dep, "why");
            assert_eq!(fails(&o), fail, "{require:?} {dep:?}: {o:?}");
        }
    }

    #[test]
    fn every_dependency_is_named_and_says_how_to_get_it() {
        for dep in Dependency::ALL {
            let alone = decide(Some(dep.name()), dep, "why");
            assert!(fails(&alone), "{dep:?}");
            assert!(!dep.how_to_get().is_empty(), "{dep:?}");
        }
    }

    #[test]
    fn messages_say_what_is_missing_and_how_to_get_it() {
        let why = "TEST_DATABASE_URL is not set";
        match decide(Some("postgres,dkim"), Dependency::Postgres, why) {
            Outcome::Fail(m) => {
                assert!(m.contains("postgres is required"), "{m}");
                assert!(m.contains("LP_TEST_REQUIRE=postgres,dkim"), "{m}");
                assert!(m.contains(why), "{m}");
                assert!(m.contains("TEST_DATABASE_URL=postgres://"), "{m}");
            }
            o => panic!("{o:?}"),
        }
        match decide(None, Dependency::Dkim, "dkimpy is not installed") {
            Outcome::Skip(l) => {
                assert!(l.starts_with("skipped: dkimpy is not installed"), "{l}");
                assert!(l.contains("LP_TEST_REQUIRE=dkim"), "{l}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn an_unknown_name_fails_rather_than_requiring_nothing() {
        for require in ["postgress", "postgres,dkimpy", "none"] {
            match decide(Some(require), Dependency::Corpus, "why") {
                Outcome::Fail(m) => {
                    assert!(m.contains("no dependency the tests know"), "{m}");
                    assert!(m.contains("postgres, dkim, corpus"), "{m}");
                }
                o => panic!("{require}: {o:?}"),
            }
        }
    }
}
