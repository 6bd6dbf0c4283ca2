//! `letterpress subscribers add | import | export | list | remove`.

mod csv_file;
mod providers;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use futures_util::TryStreamExt;
use letterpress_core::{SubscriberEmail, SubscriberName, SubscriberStatus, terminal_safe};
use letterpress_store::{
    AddOutcome, ImportRow, ImportSummary, NewSubscriber, Store, Subscriber, UpsertMode,
};
use serde_json::{Map, Value};

use self::csv_file::{LineIndex, neutralise, restore};
use self::providers::Format;
use crate::cli::SubscribersCommand;
use crate::config::Config;
use crate::wiring;

/// Runs one `subscribers` subcommand.
pub(crate) async fn run(config: &Config, cmd: SubscribersCommand) -> anyhow::Result<ExitCode> {
    let store = wiring::open_store(config).await?;
    let result = match cmd {
        SubscribersCommand::Add {
            email,
            name,
            tags,
            resubscribe,
        } => {
            let email = SubscriberEmail::parse(&email)?;
            let name = match name.as_deref().map(SubscriberName::parse).transpose() {
                Ok(name) => name.flatten(),
                Err(e) => bail!("--name: {e}"),
            };
            let new = NewSubscriber {
                email: email.clone(),
                name,
                tags,
                attributes: Map::new(),
                status: None,
                source: "cli".into(),
            };
            let outcome = store.add_subscriber(&new, mode(resubscribe)).await?;
            match outcome {
                AddOutcome::Added(_) => eprintln!("added {email}"),
                AddOutcome::Updated(_) => eprintln!("updated {email}"),
                AddOutcome::Unchanged(_) => {
                    eprintln!("{email} is already subscribed; nothing changed")
                }
                AddOutcome::Suppressed(_) => {
                    eprintln!(
                        "{email} is suppressed (unsubscribed, bounced or complained); use --resubscribe if they asked to come back"
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::Import {
            file,
            dry_run,
            strict,
            resubscribe,
        } => import(&store, &file, dry_run, strict, mode(resubscribe)).await,
        SubscribersCommand::Export { out } => {
            let writer: Box<dyn Write> = match &out {
                Some(p) => {
                    Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?)
                }
                None => Box::new(io::stdout().lock()),
            };
            let n = export(&store, writer).await?;
            eprintln!(
                "exported {n} subscribers{}",
                out.map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::List { status, json } => {
            let status = status
                .as_deref()
                .map(str::parse::<SubscriberStatus>)
                .transpose()?;
            let list = store.list_subscribers(status).await?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                // Names and tags are shown with their control characters
                // escaped: one stored before names were normalised could
                // otherwise retitle or clear the operator's terminal.
                for s in &list {
                    eprintln!(
                        "{:<40} {:<12} {:<24} {}",
                        terminal_safe(s.email.as_str()),
                        s.status.as_str(),
                        terminal_safe(s.name.as_deref().unwrap_or("")),
                        terminal_safe(&s.tags.join(","))
                    );
                }
                eprintln!("{} subscriber(s)", list.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        SubscribersCommand::Remove { email, forget } => {
            let known = if forget {
                // The store hashes with the current token secret (wiring).
                store.forget(&email).await?
            } else {
                store.unsubscribe_email(&email, "cli").await?
            };
            match (known, forget) {
                (true, true) => {
                    eprintln!("forgot {email}: personal data erased, the address stays suppressed")
                }
                (true, false) => eprintln!("unsubscribed {email}"),
                (false, _) => eprintln!(
                    "{email}: no such subscriber, or already unsubscribed; nothing changed"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    store.close().await;
    result
}

fn mode(resubscribe: bool) -> UpsertMode {
    if resubscribe {
        UpsertMode::Resubscribe
    } else {
        UpsertMode::Normal
    }
}

/// Which column holds what. Header names are matched case-insensitively,
/// so listmonk exports (`email,name,attributes,status`) and Mailchimp
/// exports (`Email Address,First Name,Last Name,TAGS`) import as they are.
struct Columns {
    /// Whose export it is, by its header row.
    format: Format,
    /// The header names, lower-cased (the status column's, in messages).
    status_name: Vec<String>,
    email: usize,
    name: Option<usize>,
    first_name: Option<usize>,
    last_name: Option<usize>,
    tags: Option<usize>,
    status: Option<usize>,
    attributes: Option<usize>,
    source: Option<usize>,
    /// Everything else becomes a string attribute.
    extra: Vec<(usize, String)>,
    width: usize,
}

/// Columns an export writes that describe the record rather than the
/// subscriber; on import they are not turned into attributes.
const BOOKKEEPING: [&str; 8] = [
    "id",
    "uuid",
    "created_at",
    "updated_at",
    "confirmed_at",
    "unsubscribed_at",
    "optin_time",
    "last_changed",
];

impl Columns {
    fn from_headers(headers: &csv::StringRecord, file: &Path) -> anyhow::Result<Self> {
        let norm: Vec<String> = headers
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_lowercase())
            .collect();
        let shown = |i: usize| {
            headers
                .get(i)
                .unwrap_or("")
                .trim()
                .trim_start_matches('\u{feff}')
        };
        let twice = |what: String| {
            anyhow!(
                "{}: line 1: the header names {what} twice; which one is meant?",
                file.display()
            )
        };
        // A column named twice would be read from one place and silently
        // ignored in the other.
        for (i, h) in norm.iter().enumerate() {
            if let Some(j) = norm[..i].iter().position(|o| o == h)
                && !h.is_empty()
            {
                return Err(twice(format!(
                    "the column {:?} (columns {} and {})",
                    shown(j),
                    j + 1,
                    i + 1
                )));
            }
        }
        // So is a field that two of its names claim (`email` and `E-Mail`).
        let find = |field: &str, names: &[&str]| -> anyhow::Result<Option<usize>> {
            let mut found = (0..norm.len()).filter(|&i| names.contains(&norm[i].as_str()));
            let first = found.next();
            if let (Some(a), Some(b)) = (first, found.next()) {
                return Err(twice(format!(
                    "the {field} column ({:?} in column {}, {:?} in column {})",
                    shown(a),
                    a + 1,
                    shown(b),
                    b + 1
                )));
            }
            Ok(first)
        };
        let email = find(
            "email",
            &[
                "email",
                "email address",
                "e-mail",
                "email_address",
                "e-mail address",
                "mail",
            ],
        )?
        .ok_or_else(|| {
            anyhow!(
                "{}: line 1: the header row has no `email` column",
                file.display()
            )
        })?;
        let format = providers::detect(&norm);
        let name = find("name", &["name", "full name", "full_name"])?;
        let first_name = find(
            "first name",
            &["first name", "first_name", "firstname", "fname"],
        )?;
        let last_name = find(
            "last name",
            &["last name", "last_name", "lastname", "lname"],
        )?;
        let tags = find("tags", &["tags", "tag", "labels"])?;
        let status = find("status", format.status_columns())?;
        // Keila keeps its custom fields as a JSON object in `Data`.
        let attribute_names: &[&str] = if format == Format::Keila {
            &["attributes", "attribs", "data"]
        } else {
            &["attributes", "attribs"]
        };
        let attributes = find("attributes", attribute_names)?;
        let source = find("source", &["source"])?;
        let used = [
            Some(email),
            name,
            first_name,
            last_name,
            tags,
            status,
            attributes,
            source,
        ];
        let extra = norm
            .iter()
            .enumerate()
            .filter(|(i, h)| {
                !used.contains(&Some(*i)) && !h.is_empty() && !BOOKKEEPING.contains(&h.as_str())
            })
            .map(|(i, _)| (i, headers.get(i).unwrap_or("").trim().to_string()))
            .collect();
        Ok(Self {
            format,
            status_name: norm.clone(),
            email,
            name,
            first_name,
            last_name,
            tags,
            status,
            attributes,
            source,
            extra,
            width: headers.len(),
        })
    }

    /// One record to a subscriber, or the reason it is rejected. Cells are
    /// read as `export` wrote them: a spreadsheet formula's neutralising
    /// `'` comes off ([`restore`]).
    fn parse(&self, record: &csv::StringRecord) -> Result<Parsed, String> {
        if record.len() != self.width {
            return Err(format!(
                "expected {} fields, found {}",
                self.width,
                record.len()
            ));
        }
        let get = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .map(|s| restore(s.trim()))
                .filter(|s| !s.is_empty())
        };
        let raw_email = restore(record.get(self.email).unwrap_or("").trim());
        if providers::is_placeholder(self.format, raw_email) {
            return Ok(Parsed::Placeholder);
        }
        let email = SubscriberEmail::parse(raw_email).map_err(|e| e.to_string())?;
        let name = match get(self.name).map(SubscriberName::parse).transpose() {
            Ok(Some(Some(name))) => Some(name),
            Ok(_) => {
                let full = [get(self.first_name), get(self.last_name)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                SubscriberName::parse(&full).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let tags = get(self.tags)
            .map(|t| {
                t.split([',', ';'])
                    .map(|s| s.trim().trim_matches('"').to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let raw_status = get(self.status);
        let status = providers::map_status(self.format, raw_status)?;
        let column = self
            .status
            .and_then(|i| self.status_name.get(i))
            .map(String::as_str);
        let mapping = match (raw_status, column) {
            (Some(raw), Some(column)) => format!("{column} {raw:?}"),
            (None, Some(column)) => format!("{column} empty"),
            (_, None) => "no status column".to_string(),
        };
        let mapping = (
            mapping,
            status.map_or("active, or as already here", |s| s.as_str()),
        );
        let mut attributes = match get(self.attributes) {
            Some(json) => match serde_json::from_str::<Value>(json) {
                Ok(Value::Object(m)) => m,
                _ => return Err(format!("attributes {json:?} is not a JSON object")),
            },
            None => Map::new(),
        };
        for (i, header) in &self.extra {
            if let Some(v) = get(Some(*i)) {
                attributes.insert(header.clone(), Value::String(v.to_string()));
            }
        }
        Ok(Parsed::Row(
            NewSubscriber {
                email,
                name,
                tags,
                attributes,
                status,
                source: get(self.source).unwrap_or("import").to_string(),
            },
            mapping,
        ))
    }
}

/// One record as read.
enum Parsed {
    /// A subscriber, and (the provider's state, what it became here).
    Row(NewSubscriber, (String, &'static str)),
    /// A Substack stand-in for a deleted reader: skipped, not rejected.
    Placeholder,
}

/// Status names of letterpress, listmonk and Mailchimp exports.
fn parse_status(s: &str) -> Result<SubscriberStatus, String> {
    match s.to_lowercase().as_str() {
        "enabled" | "subscribed" | "confirmed" => Ok(SubscriberStatus::Active),
        "blocklisted" | "blacklisted" => Ok(SubscriberStatus::Unsubscribed),
        "cleaned" => Ok(SubscriberStatus::Bounced),
        "unconfirmed" => Ok(SubscriberStatus::Pending),
        other => other
            .parse()
            .map_err(|e: letterpress_core::UnknownStatus| e.to_string()),
    }
}

/// Streams the CSV into the store. Every bad row is reported with its line
/// numbers and skipped; every good row is imported.
///
/// With `strict`, a rejected row fails the import (exit 1) and nothing is
/// written: the file is first read in a dry run (the store classifies
/// exactly as it would import) and imported only if nothing was rejected,
/// which reads it twice. `--strict --dry-run` is that check alone.
async fn import(
    store: &Store,
    file: &Path,
    dry_run: bool,
    strict: bool,
    mode: UpsertMode,
) -> anyhow::Result<ExitCode> {
    let mut pass = read_into(store, file, mode, dry_run || strict).await?;
    let refused = strict && !pass.summary.rejected.is_empty();
    if strict && !dry_run && !refused {
        pass = read_into(store, file, mode, false).await?;
    }
    let Pass {
        summary,
        spans,
        format,
        mapped,
        placeholders,
    } = pass;
    // What the file was taken for, and what each of its states became:
    // the operator checks this (with --dry-run first) before trusting it.
    eprintln!("{}: {}", file.display(), format.name());
    for ((state, status), n) in &mapped {
        eprintln!("  {} -> {status}: {n}", terminal_safe(state));
    }
    if placeholders > 0 {
        eprintln!(
            "  {placeholders} skipped: Substack's placeholders for deleted readers (@deletion-request.substack.com)"
        );
    }
    for (line, reason) in &summary.rejected {
        match spans.get(line) {
            Some(last) => eprintln!("{}: lines {line}-{last}: {reason}", file.display()),
            None => eprintln!("{}: line {line}: {reason}", file.display()),
        }
    }
    let rejected = summary.rejected.len();
    eprintln!(
        "{}{}: {} added, {} updated, {} unchanged, {} suppressed, {rejected} rejected",
        if refused {
            format!("--strict and {rejected} rejected, nothing written: ")
        } else if dry_run {
            "dry run, nothing written: ".to_string()
        } else {
            String::new()
        },
        file.display(),
        summary.added,
        summary.updated,
        summary.unchanged,
        summary.suppressed,
    );
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What one read of the file through the store gave.
struct Pass {
    summary: ImportSummary,
    /// The last line of each rejected record that spans several, by its first.
    spans: HashMap<u64, u64>,
    /// Whose export the file is.
    format: Format,
    /// Rows read per (provider state, what it became here).
    mapped: BTreeMap<(String, &'static str), u64>,
    /// Substack placeholders skipped.
    placeholders: u64,
}

/// Reads `file` into the store (or, with `dry_run`, through it).
async fn read_into(
    store: &Store,
    file: &Path,
    mode: UpsertMode,
    dry_run: bool,
) -> anyhow::Result<Pass> {
    let reader = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let lines = LineIndex::default();
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(lines.reader(io::BufReader::with_capacity(1 << 16, reader)));
    let headers = csv
        .headers()
        .with_context(|| format!("{}: line 1: cannot read the header row", file.display()))?
        .clone();
    if lines.unterminated_at(csv.position().byte()) {
        bail!(
            "{}: line 1: a quoted column name is not closed before the end of the file",
            file.display()
        );
    }
    let columns = Columns::from_headers(&headers, file)?;
    let mut record = csv::StringRecord::new();
    let mut read_error: Option<anyhow::Error> = None;
    let mut spans = HashMap::new();
    // An iterator over the file, read as the store consumes it: the file
    // is never in memory as a whole.
    let mut mapped: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut placeholders = 0u64;
    let rows = std::iter::from_fn(|| {
        loop {
            let line = csv.position().line() + 1;
            let (result, start) = match csv.read_record(&mut record) {
                Ok(true) => {
                    let end = csv.position().byte();
                    // csv-core ends a quoted field left open at the end of the
                    // file without complaint, with every line after the quote
                    // inside it: the row is wrong, and so are the rows it ate.
                    let result = if lines.unterminated_at(end) {
                        Err(
                            "a quote opened here is never closed, so every line up to the end \
                             of the file was read as one row; none of them is imported"
                                .to_string(),
                        )
                    } else {
                        match columns.parse(&record) {
                            Ok(Parsed::Row(row, mapping)) => {
                                *mapped.entry(mapping).or_default() += 1;
                                Ok(row)
                            }
                            Ok(Parsed::Placeholder) => {
                                placeholders += 1;
                                continue;
                            }
                            Err(e) => Err(e),
                        }
                    };
                    (result, record.position().map(|p| p.byte()))
                }
                Ok(false) => return None,
                Err(e) => match e.kind() {
                    csv::ErrorKind::Utf8 { pos, .. } => (
                        Err("is not valid UTF-8".to_string()),
                        pos.as_ref().map(|p| p.byte()),
                    ),
                    _ => {
                        read_error = Some(anyhow!("{}: {e}", file.display()));
                        return None;
                    }
                },
            };
            let (first, last) = match start {
                Some(start) => lines.lines_of(start, csv.position().byte()),
                None => (line, line),
            };
            // A rejected record names every line it took.
            if result.is_err() && last > first {
                spans.insert(first, last);
            }
            return Some(ImportRow {
                line: first,
                result,
            });
        }
    });
    let summary = store.import(rows, mode, dry_run).await?;
    if let Some(e) = read_error {
        return Err(e);
    }
    Ok(Pass {
        summary,
        spans,
        format: columns.format,
        mapped,
        placeholders,
    })
}

/// Writes every subscriber as CSV in a form `import` reads back. A cell a
/// spreadsheet would take for a formula is neutralised ([`neutralise`]):
/// opening an export must not run what a signup typed as its name.
async fn export(store: &Store, writer: Box<dyn Write>) -> anyhow::Result<u64> {
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record([
        "email",
        "name",
        "status",
        "tags",
        "attributes",
        "source",
        "created_at",
        "confirmed_at",
        "unsubscribed_at",
    ])?;
    let mut n = 0u64;
    let mut stream = std::pin::pin!(store.stream_subscribers());
    while let Some(s) = stream.try_next().await? {
        write_row(&mut csv, &s)?;
        n += 1;
    }
    csv.flush()?;
    Ok(n)
}

fn write_row<W: Write>(csv: &mut csv::Writer<W>, s: &Subscriber) -> anyhow::Result<()> {
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let attributes = if s.attributes.is_empty() {
        String::new()
    } else {
        Value::Object(s.attributes.clone()).to_string()
    };
    let tags = s.tags.join(",");
    let (created, confirmed, unsubscribed) = (
        s.created_at.to_rfc3339(),
        time(s.confirmed_at),
        time(s.unsubscribed_at),
    );
    let cells: [&str; 9] = [
        s.email.as_str(),
        s.name.as_deref().unwrap_or(""),
        s.status.as_str(),
        &tags,
        &attributes,
        &s.source,
        &created,
        &confirmed,
        &unsubscribed,
    ];
    csv.write_record(cells.map(neutralise).iter().map(|c| c.as_bytes()))?;
    Ok(())
}
