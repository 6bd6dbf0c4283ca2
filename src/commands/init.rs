//! `letterpress init`: a commented `letterpress.toml` for the Zola or Hugo
//! site it finds, the token secret and a DKIM key in a private data folder
//! beside it, and the next three steps.
//!
//! What is read from the site is decided by pure functions over the site's
//! files ([`detect_site`], [`newsletter_section`]); the file written is a
//! pure function of what was found ([`config_text`]).

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use letterpress_dkim::RsaKey;

use crate::cli::InitArgs;
use crate::files;

/// The static site generator a site is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generator {
    /// Zola: `config.toml` or `zola.toml` with `base_url`.
    Zola,
    /// Hugo: `hugo.toml` or `config.toml` with `baseURL`.
    Hugo,
}

/// What `init` learnt about a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    /// Which generator.
    pub(crate) generator: Generator,
    /// The config file it was read from (its name in the site folder).
    pub(crate) config_file: String,
    /// The site's address, without a trailing slash.
    pub(crate) base_url: String,
    /// The site's title, the newsletter's name.
    pub(crate) title: String,
    /// The site's language (Zola `default_language`, Hugo `languageCode`
    /// or `defaultContentLanguage`), `en` when it names none.
    pub(crate) language: String,
}

/// The site config files looked for, in the order the generators read them.
const SITE_FILES: [&str; 3] = ["zola.toml", "hugo.toml", "config.toml"];

/// Recognises the site from its config files: `(name, contents)` of those
/// of [`SITE_FILES`] that exist. Zola's keys are `base_url` and `title`,
/// Hugo's `baseURL` and `title` (TOML only: a YAML or JSON Hugo config is
/// named in the error, with the flags that replace it).
pub(crate) fn detect_site(files: &[(&str, &str)]) -> Result<Site, String> {
    for name in SITE_FILES {
        let Some((_, text)) = files.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("{name} is not valid TOML: {e}"))?;
        let string = |key: &str| table.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let found = match (name, string("base_url"), string("baseURL")) {
            ("zola.toml", Some(url), _) | ("config.toml", Some(url), None) => {
                Some((Generator::Zola, url))
            }
            ("hugo.toml", _, Some(url)) | ("config.toml", None, Some(url)) => {
                Some((Generator::Hugo, url))
            }
            _ => None,
        };
        if let Some((generator, base_url)) = found {
            let base_url = base_url.trim_end_matches('/').to_string();
            url::Url::parse(&base_url).map_err(|e| {
                format!("{name}: the site's address {base_url:?} is not a URL: {e}")
            })?;
            return Ok(Site {
                generator,
                config_file: name.to_string(),
                title: string("title").unwrap_or_else(|| "Newsletter".to_string()),
                language: ["default_language", "languageCode", "defaultContentLanguage"]
                    .iter()
                    .find_map(|k| string(k))
                    .filter(|l| letterpress_composer::Language::parse(l).is_ok())
                    .unwrap_or_else(|| "en".to_string()),
                base_url,
            });
        }
    }
    Err(
        "no Zola (config.toml or zola.toml with base_url) or Hugo (hugo.toml with baseURL) \
         config found; pass --base-url and --title to describe the site"
            .to_string(),
    )
}

/// Which content section holds the newsletter: the one named by the
/// operator, else `newsletter` if the site has it, else the only section
/// with Markdown pages. `None` when the operator must choose among
/// `candidates`.
pub(crate) fn newsletter_section(
    candidates: &[String],
    chosen: Option<&str>,
) -> Result<Option<String>, String> {
    if let Some(c) = chosen {
        let c = c.trim_matches('/');
        return if candidates.iter().any(|s| s == c) {
            Ok(Some(c.to_string()))
        } else {
            Err(format!(
                "--section {c}: content/{c} has no Markdown pages (sections found: {})",
                list(candidates)
            ))
        };
    }
    if candidates.iter().any(|s| s == "newsletter") {
        return Ok(Some("newsletter".to_string()));
    }
    match candidates {
        [] => Err("the site's content/ folder has no section with Markdown pages".to_string()),
        [only] => Ok(Some(only.clone())),
        _ => Ok(None),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// The folders of `content/` that hold Markdown pages, sorted.
fn sections(site: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(site.join("content")) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter(|e| {
            std::fs::read_dir(e.path()).is_ok_and(|mut files| {
                files.any(|f| f.is_ok_and(|f| f.path().extension().is_some_and(|x| x == "md")))
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// The folder, beside the config, that holds the database, the token
/// secret and the DKIM key: private, and kept out of the site's git.
pub(crate) const DATA_DIR: &str = ".letterpress";

/// The commented config for `site`, its newsletter in `section`, a DKIM
/// key under `selector`.
pub(crate) fn config_text(site: &Site, section: &str, selector: &str) -> String {
    let host = url::Url::parse(&site.base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "example.com".to_string());
    let domain = host.strip_prefix("www.").unwrap_or(&host).to_string();
    let name = site.title.replace('\\', "\\\\").replace('"', "\\\"");
    let generator = match site.generator {
        Generator::Zola => "Zola",
        Generator::Hugo => "Hugo",
    };
    format!(
        r#"# letterpress configuration for {base_url}, written by `letterpress init`
# from the {generator} site's {config_file}. Relative paths are relative to
# this file's folder (the site root). Every key can be overridden by an
# environment variable LETTERPRESS_<SECTION>__<KEY>. Secrets never go here:
# they come from the environment or the files in {DATA_DIR}/.

[database]
# SQLite in the private data folder ({DATA_DIR}/ is git-ignored). For
# several workers, use postgres://user@host/db (password: in the URL's
# environment variable LETTERPRESS_DATABASE__URL, not here).
url = "sqlite://{DATA_DIR}/letterpress.db"

[newsletter]
name = "{name}"
# The address your readers see and reply to. It must be on a domain whose
# DNS you control: `letterpress dns` prints the records to publish.
from = "{name} <newsletter@{domain}>"
list_id = "newsletter.{domain}"
# Required in every commercial email (CAN-SPAM, GDPR imprint): a postal
# address where you can be reached. Replace this placeholder.
postal_address = "Your postal address, City, Country"
# Where an issue is published on the site; relative links resolve against it.
issue_url = "{base_url}/{section}/{{slug}}/"
# The language issues are written in (the HTML's lang, for screen readers);
# an issue's front matter `[extra] language = "..."` overrides it.
language = "{language}"

[content]
# The site root: include_md(path = "...") shortcodes are relative to it.
root = "."
# template = "templates/newsletter.mjml"   (default: the built-in layout)

[delivery]
# "file" writes one .eml per message to outbox_dir (to try things out);
# "smtp" sends through smtp_url.
transport = "file"
outbox_dir = "{DATA_DIR}/outbox"
# smtp_url = "smtp://user@smtp.example.com:587?tls=required"
#   password: LETTERPRESS_DELIVERY__SMTP_PASSWORD, or smtp_password_file
# rate_per_second = 0        (0 = as fast as the relay takes them)
# return_path = "bounces+{{token}}@bounce.{domain}"
#   the envelope sender per message (VERP; {{token}} names the delivery,
#   signed), so a bounce mailed back is traced to it. Unset: From.

[dkim]
# Signs every message (Gmail and Yahoo require it of bulk senders). The key
# was generated into {DATA_DIR}/; publish its record (`letterpress dns`).
domain = "{domain}"
selector = "{selector}"
private_key_path = "{DATA_DIR}/dkim-{selector}.pem"

[server]
# `letterpress serve`: unsubscribe pages, one-click unsubscribe, signups,
# webhooks. Put it behind your HTTPS reverse proxy and set public_url to
# the address readers reach it at (links in every email point there).
bind = "127.0.0.1:8080"
public_url = "https://newsletter.{domain}"
# trusted_proxies = ["127.0.0.1", "::1"]   (the proxy's addresses)

# Bounces and complaints your relay reports after accepting a message. Give
# it the webhook URL and fill in its section (secrets from the environment):
# [webhooks.ses]       SNS HTTPS subscription to https://newsletter.{domain}/webhooks/ses
# topic_arns = ["arn:aws:sns:REGION:ACCOUNT:TOPIC"]
# [webhooks.postmark]  https://postmark:PASSWORD@newsletter.{domain}/webhooks/postmark
# username = "postmark"  (PASSWORD: LETTERPRESS_WEBHOOKS__POSTMARK__PASSWORD)
# [webhooks.mailgun]   https://newsletter.{domain}/webhooks/mailgun
#   signing key: LETTERPRESS_WEBHOOKS__MAILGUN__SIGNING_KEY
# [webhooks.sendgrid]  https://newsletter.{domain}/webhooks/sendgrid (signed Event Webhook)
# public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE..."
# [webhooks.resend]    https://newsletter.{domain}/webhooks/resend
#   secret: LETTERPRESS_WEBHOOKS__RESEND__SECRET (whsec_...)

[schedule]
# `serve` (or `letterpress send --due` from cron) sends every issue here
# whose front matter has send_at in the past and that was not sent yet.
cron = "*/5 * * * *"
timezone = "UTC"
issues_dir = "content/{section}"
"#,
        base_url = site.base_url,
        config_file = site.config_file,
        language = site.language,
    )
}

/// `letterpress init`.
pub(crate) fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let site_dir = match &args.site {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("the working directory")?,
    };
    if !site_dir.is_dir() {
        bail!("--site {}: not a folder", site_dir.display());
    }
    let site = match (&args.base_url, &args.title) {
        (Some(base_url), title) => Site {
            generator: Generator::Zola,
            config_file: "the command line".to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            title: title.clone().unwrap_or_else(|| "Newsletter".to_string()),
            language: "en".to_string(),
        },
        (None, title) => {
            let texts: Vec<(&str, String)> = SITE_FILES
                .iter()
                .filter_map(|n| Some((*n, std::fs::read_to_string(site_dir.join(n)).ok()?)))
                .collect();
            let borrowed: Vec<(&str, &str)> = texts.iter().map(|(n, t)| (*n, t.as_str())).collect();
            let mut site =
                detect_site(&borrowed).map_err(|e| anyhow!("{}: {e}", site_dir.display()))?;
            if let Some(t) = title {
                site.title = t.clone();
            }
            site
        }
    };
    let candidates = sections(&site_dir);
    let section = match newsletter_section(&candidates, args.section.as_deref())
        .map_err(|e| anyhow!("{}: {e}", site_dir.display()))?
    {
        Some(s) => s,
        None => ask_section(&candidates)?,
    };

    let config_path = site_dir.join(crate::config::LOCAL_CONFIG);
    if config_path.exists() && !args.force {
        bail!(
            "{} exists; pass --force to replace it (the secret and key in {DATA_DIR}/ are kept)",
            config_path.display()
        );
    }
    let data = site_dir.join(DATA_DIR);
    files::create_private_dir(&data).with_context(|| format!("creating {}", data.display()))?;
    let ignore = data.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(
            &ignore,
            "# letterpress's database, token secret and DKIM keys: never commit them.\n*\n",
        )
        .with_context(|| format!("writing {}", ignore.display()))?;
    }
    // The secret and the key are kept if they exist: replacing them would
    // break every link already sent and the published DNS record.
    let secret = data.join("secret.key");
    let made_secret = !secret.exists();
    if made_secret {
        files::write_private(&secret, &crate::config::new_secret())
            .with_context(|| format!("writing {}", secret.display()))?;
    }
    let key_path = data.join(format!("dkim-{}.pem", args.selector));
    let made_key = !key_path.exists();
    if made_key {
        let pem = RsaKey::generate()
            .and_then(|k| k.to_pkcs8_pem())
            .map_err(|e| anyhow!("generating a DKIM key: {e}"))?;
        files::write_private(&key_path, &pem)
            .with_context(|| format!("writing {}", key_path.display()))?;
    }
    files::write_private_forced(
        &config_path,
        &config_text(&site, &section, &args.selector),
        args.force,
    )
    .with_context(|| format!("writing {}", config_path.display()))?;

    let kept = |made: bool| if made { "generated" } else { "kept" };
    eprintln!(
        "wrote {} for {} ({} site, newsletter in content/{section}/)\n\
         {} the token secret {}\n\
         {} the DKIM key {} (selector {})\n",
        config_path.display(),
        site.base_url,
        match site.generator {
            Generator::Zola => "Zola",
            Generator::Hugo => "Hugo",
        },
        kept(made_secret),
        secret.display(),
        kept(made_key),
        key_path.display(),
        args.selector,
    );
    eprintln!(
        "Next:\n\
         1. Edit {file}: the From address, the postal address and server.public_url.\n\
         2. Publish the DNS records `letterpress dns` prints (DKIM, SPF, DMARC), then run `letterpress doctor`.\n\
         3. Import your list (`letterpress subscribers import export.csv`) and check an issue: \
         `letterpress render content/{section}/<issue>.md`, then `letterpress send content/{section}/<issue>.md --to you@example.com`.",
        file = crate::config::LOCAL_CONFIG,
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks which section holds the newsletter, when there is a terminal to ask.
fn ask_section(candidates: &[String]) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "the site has several sections ({}); pass --section NAME for the newsletter's",
            list(candidates)
        );
    }
    loop {
        eprint!(
            "Which section holds the newsletter? [{}] ",
            candidates.join("/")
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        if stdin.lock().read_line(&mut answer)? == 0 {
            bail!("no section chosen; pass --section NAME");
        }
        let answer = answer.trim();
        if candidates.iter().any(|c| c == answer) {
            return Ok(answer.to_string());
        }
        eprintln!("{answer:?} is not one of them.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_zola_and_hugo_sites_by_their_config() {
        let zola = r#"base_url = "https://rust-trends.com/"
title = "Rust Trends""#;
        let hugo = r#"baseURL = "https://example.org/"
title = "Hugo News""#;
        // (site files, recognised as) -> generator, address, title; or the error
        type Row<'a> = (
            &'a [(&'a str, &'a str)],
            Result<(Generator, &'a str, &'a str), &'a str>,
        );
        let table: [Row<'_>; 6] = [
            (
                &[("config.toml", zola)],
                Ok((Generator::Zola, "https://rust-trends.com", "Rust Trends")),
            ),
            (
                &[("zola.toml", zola)],
                Ok((Generator::Zola, "https://rust-trends.com", "Rust Trends")),
            ),
            (
                &[("hugo.toml", hugo)],
                Ok((Generator::Hugo, "https://example.org", "Hugo News")),
            ),
            (
                &[("config.toml", hugo)],
                Ok((Generator::Hugo, "https://example.org", "Hugo News")),
            ),
            (&[("config.toml", "title = \"No address\"")], Err("no Zola")),
            (&[("config.toml", "base_url = ")], Err("not valid TOML")),
        ];
        for (files, expected) in table {
            let found = detect_site(files);
            match (found, expected) {
                (Ok(site), Ok((generator, url, title))) => {
                    assert_eq!(
                        (site.generator, site.base_url.as_str(), site.title.as_str()),
                        (generator, url, title)
                    );
                }
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{e}"),
                (found, expected) => panic!("{files:?}: {found:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn finds_the_newsletter_section() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            newsletter_section(&s(&["blog", "newsletter"]), None),
            Ok(Some("newsletter".into()))
        );
        assert_eq!(
            newsletter_section(&s(&["issues"]), None),
            Ok(Some("issues".into()))
        );
        assert_eq!(newsletter_section(&s(&["blog", "issues"]), None), Ok(None));
        assert_eq!(
            newsletter_section(&s(&["blog", "issues"]), Some("issues")),
            Ok(Some("issues".into()))
        );
        assert!(
            newsletter_section(&s(&["blog"]), Some("news"))
                .unwrap_err()
                .contains("sections found: blog")
        );
        assert!(newsletter_section(&[], None).is_err());
    }

    fn table_language(text: &str) -> String {
        let table: toml::Table = text.parse().expect("TOML");
        table["newsletter"]["language"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    #[test]
    fn the_site_language_is_taken_when_it_is_a_language_tag() {
        for (config, language) in [
            (
                "base_url = \"https://a.example\"\ndefault_language = \"nl\"",
                "nl",
            ),
            ("base_url = \"https://a.example\"", "en"),
            (
                "baseURL = \"https://a.example\"\nlanguageCode = \"pt-br\"",
                "pt-br",
            ),
            (
                "base_url = \"https://a.example\"\ndefault_language = \"not a tag\"",
                "en",
            ),
        ] {
            let site = detect_site(&[("config.toml", config)]).expect("a site");
            assert_eq!(site.language, language, "{config}");
        }
    }

    #[test]
    fn the_config_names_the_site_and_parses() {
        let site = Site {
            generator: Generator::Zola,
            config_file: "config.toml".into(),
            base_url: "https://www.rust-trends.com".into(),
            title: "Rust \"Trends\"".into(),
            language: "de-CH".into(),
        };
        let text = config_text(&site, "newsletter", "lp2026");
        assert_eq!(table_language(&text), "de-CH");
        let table: toml::Table = text.parse().expect("the written config is TOML");
        assert_eq!(
            table["newsletter"]["issue_url"].as_str(),
            Some("https://www.rust-trends.com/newsletter/{slug}/")
        );
        assert_eq!(
            table["newsletter"]["name"].as_str(),
            Some("Rust \"Trends\"")
        );
        assert_eq!(table["dkim"]["domain"].as_str(), Some("rust-trends.com"));
        assert_eq!(
            table["schedule"]["issues_dir"].as_str(),
            Some("content/newsletter")
        );
        assert_eq!(
            table["dkim"]["private_key_path"].as_str(),
            Some(".letterpress/dkim-lp2026.pem")
        );
    }
}
