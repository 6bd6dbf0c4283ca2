//! `lp-bench`: the end-to-end delivery benchmark (`make bench-e2e`).
//!
//! Measures what operators run against what postfix's `smtp-source`
//! reaches into the same `smtp-sink`:
//!
//! 1. messages per second of `letterpress send` delivering the sample
//!    issue to `LP_BENCH_N` subscribers (default 100,000), DKIM-signed with
//!    a 2048-bit RSA key the bench generates, and unsigned; with SQLite
//!    bookkeeping, and with PostgreSQL when `LP_BENCH_POSTGRES` or
//!    `TEST_DATABASE_URL` names a server;
//! 2. next to each rate, CPU seconds per 1,000 messages of our process and
//!    of smtp-source (`wait4`'s rusage), of the sink while each ran, and of
//!    the PostgreSQL server's processes (from `/proc`, when it runs here):
//!    on a shared machine a ratio of CPU is far steadier than one of rates;
//! 3. `openssl speed rsa2048`'s signing time in the same run, the physical
//!    reference for what a signature costs;
//! 4. dkimpy's verdict on a sample of signed messages as `smtp-sink`
//!    received them;
//! 5. the peak resident memory of the send at `LP_BENCH_N` and at
//!    `LP_BENCH_BIG` subscribers (default 1,000,000), and the time from
//!    the start of `send` to "newly queued" (the enqueue) at that size;
//! 6. as a bonus, CSV import speed (rows/s).
//!
//! It drives the release `letterpress` binary found next to itself, each
//! run in a fresh temporary folder with its own database and a
//! configuration made only of `LETTERPRESS_*` variables. Children's
//! progress output goes to log files in that folder; stdout carries only
//! the figures. Nothing is installed: without `smtp-sink` the bench says
//! how to get it and exits 0.
//!
//! Environment: see `benches/README.md` (`LP_BENCH_N`, `LP_BENCH_BIG`,
//! `LP_BENCH_CONNECTIONS`, `LP_BENCH_ROUNDS`, `LP_BENCH_MODES`,
//! `LP_BENCH_BACKENDS`, `LP_BENCH_POSTGRES`, `LP_BENCH_SAMPLE`,
//! `LP_BENCH_COMPARE`, `LP_BENCH_KEEP`).

#[cfg(unix)]
fn main() -> std::process::ExitCode {
    match bench::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lp-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(unix))]
fn main() {
    eprintln!("skipped: lp-bench needs a Unix system (postfix's smtp-sink, wait4)");
}

#[cfg(unix)]
mod bench {
    use std::fmt::Write as _;
    use std::fs;
    use std::io::Write as _;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, anyhow, bail};
    use letterpress_testkit::{Dkimpy, PgDb};

    const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
    const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
    /// Stands in for any server secret: the bench only needs tokens that verify.
    const SECRET: &str = "lp-bench-secret-lp-bench-secret-lp-bench";
    /// The signing domain: the default `newsletter.from`'s.
    const DKIM_DOMAIN: &str = "example.com";
    const DKIM_SELECTOR: &str = "lpbench";

    /// Where a run keeps its bookkeeping.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Backend {
        Sqlite,
        Postgres,
    }

    impl Backend {
        fn name(self) -> &'static str {
            match self {
                Backend::Sqlite => "SQLite",
                Backend::Postgres => "PostgreSQL",
            }
        }
    }

    /// One configuration the rounds measure.
    struct Case {
        backend: Backend,
        signed: bool,
        /// `None`: the binary beside the bench; else `LP_BENCH_COMPARE`'s.
        other: bool,
    }

    impl Case {
        fn label(&self) -> String {
            format!(
                "{}, {}{}",
                self.backend.name(),
                if self.signed {
                    "DKIM RSA-2048"
                } else {
                    "unsigned"
                },
                if self.other { " [compare]" } else { "" }
            )
        }
    }

    /// What the environment asks for.
    struct Params {
        n: u64,
        big: u64,
        connections: u32,
        rounds: u64,
        keep: bool,
        sample: u64,
        modes: Vec<bool>,
        backends: Vec<Backend>,
        postgres: Option<String>,
        compare: Option<PathBuf>,
        /// `LP_BENCH_BIG_STOP=1`: stop the big runs at "newly queued".
        big_stop: bool,
    }

    fn env_u64(key: &str, default: u64) -> anyhow::Result<u64> {
        match std::env::var(key) {
            Ok(v) => v
                .replace(['_', ','], "")
                .parse()
                .with_context(|| format!("{key}={v:?} is not a whole number")),
            Err(_) => Ok(default),
        }
    }

    /// A comma-separated list of names, each mapped by `parse`.
    fn env_list<T>(
        key: &str,
        default: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<Vec<T>> {
        let v = std::env::var(key).unwrap_or_else(|_| default.to_string());
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse(s).ok_or_else(|| anyhow!("{key}={v:?}: unknown name {s:?}")))
            .collect()
    }

    impl Params {
        fn from_env() -> anyhow::Result<Params> {
            let postgres = ["LP_BENCH_POSTGRES", "TEST_DATABASE_URL"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
            let mut backends = env_list("LP_BENCH_BACKENDS", "sqlite,postgres", |s| match s {
                "sqlite" => Some(Backend::Sqlite),
                "postgres" => Some(Backend::Postgres),
                _ => None,
            })?;
            if postgres.is_none() {
                backends.retain(|b| *b != Backend::Postgres);
            }
            let modes = env_list("LP_BENCH_MODES", "signed,unsigned", |s| match s {
                "signed" => Some(true),
                "unsigned" => Some(false),
                _ => None,
            })?;
            if backends.is_empty() || modes.is_empty() {
                bail!("LP_BENCH_BACKENDS and LP_BENCH_MODES leave nothing to measure");
            }
            let compare = std::env::var_os("LP_BENCH_COMPARE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
            if let Some(c) = &compare
                && !c.is_file()
            {
                bail!("LP_BENCH_COMPARE={}: no such binary", c.display());
            }
            Ok(Params {
                n: env_u64("LP_BENCH_N", 100_000)?.max(1),
                big: env_u64("LP_BENCH_BIG", 1_000_000)?,
                connections: env_u64("LP_BENCH_CONNECTIONS", 8)?.clamp(1, 256) as u32,
                rounds: env_u64("LP_BENCH_ROUNDS", 3)?.clamp(1, 99),
                keep: std::env::var("LP_BENCH_KEEP").is_ok_and(|v| v == "1"),
                sample: env_u64("LP_BENCH_SAMPLE", 20)?,
                modes,
                backends,
                postgres,
                compare,
                big_stop: std::env::var("LP_BENCH_BIG_STOP").is_ok_and(|v| v == "1"),
            })
        }

        fn cases(&self) -> Vec<Case> {
            let mut cases = Vec::new();
            for &backend in &self.backends {
                for &signed in &self.modes {
                    for other in [false, true] {
                        if other && self.compare.is_none() {
                            continue;
                        }
                        cases.push(Case {
                            backend,
                            signed,
                            other,
                        });
                    }
                }
            }
            cases
        }
    }

    /// The sample issue and the site root its shortcodes resolve against.
    struct Issue {
        path: PathBuf,
        content_root: PathBuf,
    }

    fn pick_issue(repo: &Path) -> Issue {
        let seed = repo.join("../shared/corpus/seed-issue.md");
        let root = repo.join("../shared/corpus/rust-trends");
        if fs::metadata(&seed).is_ok_and(|m| m.len() > 0) && root.is_dir() {
            Issue {
                path: seed,
                content_root: root,
            }
        } else {
            Issue {
                path: repo.join("examples/issue.md"),
                content_root: repo.join("examples"),
            }
        }
    }

    /// CPU time used while a run went, by the processes it concerns.
    #[derive(Default, Clone, Copy)]
    struct Cpu {
        /// The measured process itself (user + system, from `wait4`).
        own: Duration,
        /// smtp-sink, over the same interval (from `/proc`).
        sink: Option<Duration>,
        /// The PostgreSQL backends serving the run's database (sampled
        /// from `/proc`, see [`backends_cpu`]).
        postgres: Option<Duration>,
    }

    /// One `letterpress send` run.
    struct SendRun {
        subscribers: u64,
        import: Duration,
        delivered: u64,
        failed: u64,
        wall: Duration,
        /// From the start of `send` to its "newly queued" line: composing
        /// the issue and enqueueing one delivery per subscriber.
        enqueue: Option<Duration>,
        peak_rss_kib: u64,
        cpu: Cpu,
    }

    impl SendRun {
        fn rate(&self) -> f64 {
            self.delivered as f64 / self.wall.as_secs_f64()
        }
        /// Messages per second after the enqueue: the delivery loop alone.
        fn delivery_rate(&self) -> Option<f64> {
            let e = self.enqueue?;
            Some(self.delivered as f64 / (self.wall.saturating_sub(e)).as_secs_f64())
        }
        fn import_rate(&self) -> f64 {
            self.subscribers as f64 / self.import.as_secs_f64()
        }
    }

    /// One `smtp-source` run.
    struct SourceRun {
        messages: u64,
        wall: Duration,
        cpu: Cpu,
    }

    impl SourceRun {
        fn rate(&self) -> f64 {
            self.messages as f64 / self.wall.as_secs_f64()
        }
    }

    /// CPU seconds per 1,000 messages (= ms per message).
    fn per_k(cpu: Duration, messages: u64) -> f64 {
        cpu.as_secs_f64() * 1000.0 / messages.max(1) as f64
    }

    /// Kills the child it holds when dropped (the sink must not outlive the bench).
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The signing key the signed runs use, generated for this run.
    struct Dkim {
        key_path: PathBuf,
        /// The TXT record of `DKIM_SELECTOR._domainkey.DKIM_DOMAIN`.
        record: String,
    }

    fn make_key(work: &Path) -> anyhow::Result<Dkim> {
        let key = letterpress_dkim::RsaKey::generate()
            .map_err(|e| anyhow!("generating an RSA key: {e}"))?;
        if key.bits() != 2048 {
            bail!("the generated key has {} bits, not 2048", key.bits());
        }
        let pem = key.to_pkcs8_pem().map_err(|e| anyhow!("{e}"))?;
        let record = key.dns_record().map_err(|e| anyhow!("{e}"))?;
        let key_path = work.join("dkim.pem");
        fs::write(&key_path, pem)?;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
        Ok(Dkim { key_path, record })
    }

    pub(crate) fn run() -> anyhow::Result<()> {
        if !Path::new(SMTP_SINK).exists() || !Path::new(SMTP_SOURCE).exists() {
            println!(
                "skipped: smtp-sink not found; install Debian's postfix package (apt-get install postfix)"
            );
            return Ok(());
        }
        let params = Params::from_env()?;
        // The workspace root, two levels above this crate.
        let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let letterpress = std::env::current_exe()
            .context("locating lp-bench")?
            .with_file_name("letterpress");
        if !letterpress.exists() {
            bail!(
                "{} not found; build it first: cargo build --release --bin letterpress",
                letterpress.display()
            );
        }
        let issue = pick_issue(&repo);
        let work = std::env::temp_dir().join(format!("lp-bench-{}", std::process::id()));
        fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

        println!("letterpress end-to-end delivery bench");
        println!("  binary       {}", letterpress.display());
        if let Some(c) = &params.compare {
            println!("  compared to  {} (LP_BENCH_COMPARE)", c.display());
        }
        println!("  issue        {}", issue.path.display());
        if !issue.path.ends_with("seed-issue.md") {
            // Smaller than the corpus's issue, so its figures do not compare
            // with the contract's; said here so nobody reads them as if.
            println!(
                "               (not the seed issue: {} is not beside {}, where the bench was built)",
                repo.join("../shared/corpus").display(),
                repo.display()
            );
        }
        println!(
            "  subscribers  {} (LP_BENCH_N), {} (LP_BENCH_BIG)",
            thousands(params.n),
            thousands(params.big)
        );
        println!(
            "  connections  {} (LP_BENCH_CONNECTIONS)",
            params.connections
        );
        println!(
            "  backends     {}{}",
            params
                .backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", "),
            if params.postgres.is_none() {
                " (PostgreSQL: set LP_BENCH_POSTGRES or TEST_DATABASE_URL)"
            } else {
                ""
            }
        );
        println!("  machine      {} cores, {}", cores(), load());
        println!("  work dir     {}", work.display());

        let result = run_in(&params, &repo, &letterpress, &issue, &work);
        if params.keep || result.is_err() {
            println!("  (kept {})", work.display());
        } else {
            let _ = fs::remove_dir_all(&work);
        }
        result
    }

    fn run_in(
        params: &Params,
        repo: &Path,
        letterpress: &Path,
        issue: &Issue,
        work: &Path,
    ) -> anyhow::Result<()> {
        let (sink, port) = start_sink(work, None)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("a runtime for creating PostgreSQL databases")?;
        let ctx = Ctx {
            letterpress,
            compare: params.compare.as_deref(),
            repo,
            issue,
            port,
            connections: params.connections,
            dkim: make_key(work)?,
            postgres: params.postgres.as_deref(),
            runtime,
            sink_pid: sink.0.id(),
            work,
        };

        // The size of our messages, for smtp-source's -l: the same issue
        // written by the file transport, which writes exactly the bytes
        // the SMTP transport sends.
        let mut sizes = Vec::new();
        for &signed in &params.modes {
            let size = ctx.message_size(&work.join(format!("size-{signed}")), signed)?;
            println!(
                "\naverage message size, {}: {} bytes",
                if signed { "signed" } else { "unsigned" },
                thousands(size)
            );
            sizes.push((signed, size));
        }
        let size_of = |signed: bool| {
            sizes
                .iter()
                .find(|(s, _)| *s == signed)
                .map_or(0, |(_, size)| *size)
        };

        let verified = if params.modes.contains(&true) && params.sample > 0 {
            Some(ctx.verify_sample(&work.join("sample"), params.sample)?)
        } else {
            None
        };

        // The rate of a shared machine drifts by tens of percent within
        // minutes, smtp-source's as much as ours. So each of our runs is
        // followed by smtp-source with messages of the same size, round
        // after round, and the median round of each case is the figure:
        // each ratio compares runs made a few seconds apart.
        let cases = params.cases();
        let mut results: Vec<Vec<(SendRun, SourceRun)>> =
            cases.iter().map(|_| Vec::new()).collect();
        for r in 1..=params.rounds {
            for (i, case) in cases.iter().enumerate() {
                println!(
                    "\n[round {r}/{}] {}: letterpress send to {} subscribers",
                    params.rounds,
                    case.label(),
                    thousands(params.n)
                );
                let folder = work.join(format!("n{r}-{i}"));
                let ours = ctx.send_run(&folder, params.n, case, false)?;
                print_send(&ours);
                if !params.keep {
                    let _ = fs::remove_dir_all(&folder);
                }
                let size = size_of(case.signed);
                println!(
                    "  then smtp-source, {} messages of {} bytes",
                    thousands(params.n),
                    thousands(size)
                );
                let source = source_run(port, params.connections, params.n, Some(size), &ctx)?;
                print_source(&source);
                println!("  ratio this round: {:.0} %", ratio(&ours, &source));
                results[i].push((ours, source));
            }
        }
        println!(
            "\nsmtp-source, {} messages of its default size",
            thousands(params.n)
        );
        let source_plain = source_run(port, params.connections, params.n, None, &ctx)?;
        print_source(&source_plain);

        println!("\nopenssl speed -seconds 3 rsa2048");
        let openssl = openssl_sign_time();
        match openssl {
            Some(t) => println!("  one RSA-2048 signature: {:.3} ms", t * 1000.0),
            None => println!("  skipped: no openssl on PATH, or its output was not understood"),
        }

        let mut bigs = Vec::new();
        if params.big > 0 {
            let signed = params.modes.contains(&true);
            for &backend in &params.backends {
                let case = Case {
                    backend,
                    signed,
                    other: false,
                };
                println!(
                    "\n[big] {}: letterpress send to {} subscribers",
                    case.label(),
                    thousands(params.big)
                );
                let big = ctx.send_run(
                    &work.join(format!("big-{backend:?}")),
                    params.big,
                    &case,
                    params.big_stop,
                )?;
                print_send(&big);
                bigs.push((case, big));
            }
        } else {
            println!("\n[big] skipped (LP_BENCH_BIG=0)");
        }
        drop(sink);

        let medians: Vec<(&Case, Vec<String>, SendRun, SourceRun)> = cases
            .iter()
            .zip(results)
            .map(|(case, mut rounds)| {
                rounds.sort_by(|a, b| ratio(&a.0, &a.1).total_cmp(&ratio(&b.0, &b.1)));
                let ratios = rounds
                    .iter()
                    .map(|(o, s)| format!("{:.0} %", ratio(o, s)))
                    .collect();
                let (ours, source) = rounds.swap_remove(rounds.len() / 2);
                (case, ratios, ours, source)
            })
            .collect();
        summary(
            params,
            &sizes,
            &medians,
            &source_plain,
            openssl,
            verified,
            &bigs,
        );
        Ok(())
    }

    /// Ours against smtp-source's, in percent.
    fn ratio(ours: &SendRun, source: &SourceRun) -> f64 {
        ours.rate() / source.rate() * 100.0
    }

    fn cpu_line(cpu: &Cpu, messages: u64) -> String {
        let mut line = format!("CPU s/1000 msgs: own {:.3}", per_k(cpu.own, messages));
        if let Some(sink) = cpu.sink {
            let _ = write!(line, ", sink {:.3}", per_k(sink, messages));
        }
        if let Some(pg) = cpu.postgres {
            let _ = write!(line, ", postgres {:.3}", per_k(pg, messages));
        }
        line
    }

    fn print_source(r: &SourceRun) {
        println!(
            "  {:.2} s, {} msgs/s; {}",
            r.wall.as_secs_f64(),
            thousands(r.rate() as u64),
            cpu_line(&r.cpu, r.messages)
        );
    }

    fn print_send(r: &SendRun) {
        println!(
            "  import {:.2} s ({} rows/s)",
            r.import.as_secs_f64(),
            thousands(r.import_rate() as u64)
        );
        println!(
            "  send   {:.2} s, {} delivered, {} failed: {} msgs/s, peak RSS {:.1} MB",
            r.wall.as_secs_f64(),
            thousands(r.delivered),
            thousands(r.failed),
            thousands(r.rate() as u64),
            mb(r.peak_rss_kib)
        );
        if let (Some(e), Some(rate)) = (r.enqueue, r.delivery_rate()) {
            println!(
                "         of which compose + enqueue {:.2} s; delivery alone {} msgs/s",
                e.as_secs_f64(),
                thousands(rate as u64)
            );
        }
        println!("         {}", cpu_line(&r.cpu, r.delivered));
    }

    #[allow(clippy::too_many_arguments)]
    fn summary(
        params: &Params,
        sizes: &[(bool, u64)],
        medians: &[(&Case, Vec<String>, SendRun, SourceRun)],
        plain: &SourceRun,
        openssl: Option<f64>,
        verified: Option<(u64, u64)>,
        bigs: &[(Case, SendRun)],
    ) {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nsummary ({} connections, {} subscribers; each case's median of {} rounds, \
             each round our send then smtp-source with messages of our size)",
            params.connections,
            thousands(params.n),
            params.rounds
        );
        for (signed, size) in sizes {
            let _ = writeln!(
                t,
                "  message size {}: {} bytes",
                if *signed { "signed" } else { "unsigned" },
                thousands(*size)
            );
        }
        let _ = writeln!(
            t,
            "\n  {:<34} {:>10} {:>10} {:>7}  {:>21}  {:>21}  {:>8}  rounds",
            "case",
            "ours/s",
            "source/s",
            "ratio",
            "CPU/1000: ours  src",
            "sink: ours  src",
            "postgres"
        );
        for (case, ratios, ours, source) in medians {
            let pg = ours.cpu.postgres.map_or_else(
                || "-".to_string(),
                |c| format!("{:.3}", per_k(c, ours.delivered)),
            );
            let sink = |cpu: &Cpu, n: u64| {
                cpu.sink
                    .map_or_else(|| "-".to_string(), |c| format!("{:.3}", per_k(c, n)))
            };
            let _ = writeln!(
                t,
                "  {:<34} {:>10} {:>10} {:>6.0} %  {:>14.3} {:>6.3}  {:>14} {:>6}  {:>8}  {}",
                case.label(),
                thousands(ours.rate() as u64),
                thousands(source.rate() as u64),
                ratio(ours, source),
                per_k(ours.cpu.own, ours.delivered),
                per_k(source.cpu.own, source.messages),
                sink(&ours.cpu, ours.delivered),
                sink(&source.cpu, source.messages),
                pg,
                ratios.join(", ")
            );
        }
        let _ = writeln!(
            t,
            "  (CPU in seconds per 1,000 messages = ms per message: of our send, of smtp-source, \
             of smtp-sink during each, and of the PostgreSQL backends serving our run's database)"
        );
        let _ = writeln!(
            t,
            "  smtp-source, default size: {} msgs/s",
            thousands(plain.rate() as u64)
        );
        if let Some(t_sign) = openssl {
            let _ = writeln!(
                t,
                "  openssl speed rsa2048, one signature: {:.3} ms (CPU)",
                t_sign * 1000.0
            );
            for backend in &params.backends {
                let find = |signed: bool| {
                    medians
                        .iter()
                        .find(|(c, ..)| c.backend == *backend && c.signed == signed && !c.other)
                };
                if let (Some((_, _, s, _)), Some((_, _, u, _))) = (find(true), find(false)) {
                    let extra = per_k(s.cpu.own, s.delivered) - per_k(u.cpu.own, u.delivered);
                    let _ = writeln!(
                        t,
                        "  {}: signing adds {:.3} ms CPU per message = {:.2} x openssl's signature (target <= 1.3 x)",
                        backend.name(),
                        extra,
                        extra / (t_sign * 1000.0)
                    );
                }
            }
        }
        match verified {
            Some((ok, n)) => {
                let _ = writeln!(
                    t,
                    "  dkimpy verified {ok} of {n} signed messages as smtp-sink received them"
                );
            }
            None => {
                let _ = writeln!(
                    t,
                    "  dkimpy: no signed sample (LP_BENCH_SAMPLE=0 or no signed mode)"
                );
            }
        }
        for (case, big) in bigs {
            let _ = writeln!(
                t,
                "  {} at {}: {} msg/s, compose + enqueue {}, peak RSS {:.1} MB (target <= 40 MB), \
                 import {} rows/s",
                case.label(),
                thousands(big.subscribers),
                thousands(big.rate() as u64),
                big.enqueue
                    .map_or_else(|| "?".to_string(), |e| format!("{:.2} s", e.as_secs_f64())),
                mb(big.peak_rss_kib),
                thousands(big.import_rate() as u64)
            );
        }
        if let Some((_, _, ours, _)) = medians.first() {
            let _ = writeln!(
                t,
                "  peak RSS of the send at {}: {:.1} MB",
                thousands(ours.subscribers),
                mb(ours.peak_rss_kib)
            );
        }
        let _ = writeln!(t, "  machine: {} cores, {}", cores(), load());
        let _ = writeln!(
            t,
            "\nreproduce: make bench-e2e   (or: cargo build --release --bin letterpress --bin lp-bench && \
             LP_BENCH_N={} LP_BENCH_BIG={} LP_BENCH_CONNECTIONS={} LP_BENCH_ROUNDS={} <target>/release/lp-bench)",
            params.n, params.big, params.connections, params.rounds
        );
        let _ = writeln!(
            t,
            "quick run: LP_BENCH_N=20000 LP_BENCH_BIG=0 LP_BENCH_ROUNDS=1 make bench-e2e"
        );
        print!("{t}");
    }

    /// A run's database.
    enum Db {
        Sqlite(PathBuf),
        /// Dropped (with `DROP DATABASE`) when the run is done.
        Postgres(PgDb),
    }

    impl Db {
        fn url(&self) -> String {
            match self {
                Db::Sqlite(path) => format!("sqlite://{}", path.display()),
                Db::Postgres(db) => db.url.clone(),
            }
        }
    }

    /// What every `letterpress` run of the bench shares.
    struct Ctx<'a> {
        letterpress: &'a Path,
        compare: Option<&'a Path>,
        repo: &'a Path,
        issue: &'a Issue,
        port: u16,
        connections: u32,
        dkim: Dkim,
        postgres: Option<&'a str>,
        runtime: tokio::runtime::Runtime,
        sink_pid: u32,
        work: &'a Path,
    }

    /// How one `letterpress` command of a run is set up.
    struct Setup<'a> {
        dir: &'a Path,
        db: &'a Db,
        transport: &'a str,
        port: u16,
        signed: bool,
        other: bool,
    }

    impl Ctx<'_> {
        /// `letterpress` in `s.dir` with the bench's configuration; its
        /// stdout and stderr are appended to `dir/letterpress.log`.
        fn command(&self, s: &Setup<'_>) -> anyhow::Result<Command> {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(s.dir.join("letterpress.log"))
                .context("opening the log")?;
            let binary = match (s.other, self.compare) {
                (true, Some(other)) => other,
                _ => self.letterpress,
            };
            let mut cmd = Command::new(binary);
            // Nothing from the caller's environment may change the setup.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("LETTERPRESS_") {
                    cmd.env_remove(key);
                }
            }
            cmd.current_dir(s.dir)
                .arg("--config")
                .arg(s.dir.join("none.toml"))
                .env("LETTERPRESS_DATABASE__URL", s.db.url())
                .env("LETTERPRESS_SERVER__SECRET", SECRET)
                .env("LETTERPRESS_CONTENT__ROOT", &self.issue.content_root)
                .env(
                    "LETTERPRESS_CONTENT__TEMPLATE",
                    self.repo.join("templates/default.mjml"),
                )
                .env("LETTERPRESS_DELIVERY__TRANSPORT", s.transport)
                .env("LETTERPRESS_DELIVERY__OUTBOX_DIR", s.dir.join("outbox"))
                .env(
                    "LETTERPRESS_DELIVERY__SMTP_URL",
                    format!("smtp://127.0.0.1:{}", s.port),
                )
                .env(
                    "LETTERPRESS_DELIVERY__CONCURRENCY",
                    self.connections.to_string(),
                )
                .env("LETTERPRESS_DELIVERY__RATE_PER_SECOND", "0")
                .env("LETTERPRESS_DELIVERY__RETRY__INITIAL", "1s")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if s.signed {
                cmd.env("LETTERPRESS_DKIM__DOMAIN", DKIM_DOMAIN)
                    .env("LETTERPRESS_DKIM__SELECTOR", DKIM_SELECTOR)
                    .env("LETTERPRESS_DKIM__PRIVATE_KEY_PATH", &self.dkim.key_path);
            }
            Ok(cmd)
        }

        /// A fresh database of `backend` for a run in `dir`.
        fn database(&self, dir: &Path, backend: Backend) -> anyhow::Result<Db> {
            Ok(match backend {
                Backend::Sqlite => Db::Sqlite(dir.join("lp.db")),
                Backend::Postgres => {
                    let admin = self
                        .postgres
                        .ok_or_else(|| anyhow!("no PostgreSQL server named"))?;
                    Db::Postgres(self.runtime.block_on(PgDb::create_on(admin)))
                }
            })
        }

        /// A migrated database in a fresh folder holding `n` subscribers;
        /// returns how long the import took.
        fn prepare(&self, s: &Setup<'_>, n: u64) -> anyhow::Result<Duration> {
            fs::create_dir_all(s.dir)?;
            fs::write(s.dir.join("none.toml"), "")?;
            let csv = s.dir.join("subscribers.csv");
            write_csv(&csv, n)?;
            self.checked(s, &["migrate"])?;
            let start = Instant::now();
            self.checked(s, &["subscribers", "import", &csv.to_string_lossy()])?;
            let took = start.elapsed();
            // The CSV is large at a million rows and no longer needed.
            let _ = fs::remove_file(&csv);
            Ok(took)
        }

        fn checked(&self, s: &Setup<'_>, args: &[&str]) -> anyhow::Result<()> {
            let status = self
                .command(s)?
                .args(args)
                .status()
                .with_context(|| format!("starting letterpress {}", args.join(" ")))?;
            if !status.success() {
                bail!(
                    "letterpress {} failed ({status}); its log ends:\n{}",
                    args.join(" "),
                    log_tail(s.dir)
                );
            }
            Ok(())
        }

        fn send_args(&self) -> Vec<String> {
            vec![
                "send".into(),
                self.issue.path.to_string_lossy().into_owned(),
                "--yes".into(),
                "--wait".into(),
                "2m".into(),
            ]
        }

        /// The average size of our messages, from 20 written by the file transport.
        fn message_size(&self, dir: &Path, signed: bool) -> anyhow::Result<u64> {
            fs::create_dir_all(dir)?;
            let db = self.database(dir, Backend::Sqlite)?;
            let s = Setup {
                dir,
                db: &db,
                transport: "file",
                port: self.port,
                signed,
                other: false,
            };
            self.prepare(&s, 20)?;
            let args = self.send_args();
            self.checked(&s, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
            let (mut total, mut count) = (0u64, 0u64);
            for slug in fs::read_dir(dir.join("outbox"))? {
                for file in fs::read_dir(slug?.path())? {
                    let meta = file?.metadata()?;
                    total += meta.len();
                    count += 1;
                }
            }
            if count == 0 {
                bail!(
                    "the file transport wrote no message; log:\n{}",
                    log_tail(dir)
                );
            }
            Ok(total / count)
        }

        /// Sends `n` signed messages over SMTP into an smtp-sink of their
        /// own that keeps each one, and has dkimpy verify every one as the
        /// sink received it. Returns (verified, checked); fails when one
        /// does not verify.
        fn verify_sample(&self, dir: &Path, n: u64) -> anyhow::Result<(u64, u64)> {
            println!("\ndkimpy: {n} signed messages through smtp-sink, each verified");
            let Some(dkimpy) = Dkimpy::find() else {
                println!("  skipped: dkimpy not found (see above)");
                return Ok((0, 0));
            };
            let dumps = dir.join("dumps");
            fs::create_dir_all(&dumps)?;
            // The sink drops root for nobody, who must be able to write here.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
            fs::set_permissions(&dumps, fs::Permissions::from_mode(0o777))?;
            let (sink, port) = start_sink(dir, Some(&dumps))?;
            let db = self.database(dir, Backend::Sqlite)?;
            let s = Setup {
                dir,
                db: &db,
                transport: "smtp",
                port,
                signed: true,
                other: false,
            };
            self.prepare(&s, n)?;
            let args = self.send_args();
            self.checked(&s, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
            drop(sink);
            let (mut ok, mut checked) = (0, 0);
            for file in fs::read_dir(&dumps)? {
                let path = file?.path();
                let message = fs::read(&path)?;
                checked += 1;
                match dkimpy.verify(&message, &self.dkim.record) {
                    Ok(_) => ok += 1,
                    Err(log) => bail!("dkimpy does not verify {} (kept):\n{log}", path.display()),
                }
            }
            if checked != n {
                bail!("smtp-sink kept {checked} messages of {n}");
            }
            println!("  {ok} of {checked} verified");
            Ok((ok, checked))
        }

        /// Imports `n` subscribers, then times `letterpress send` over SMTP
        /// into the sink and takes its CPU time and peak RSS.
        /// With `stop_at_enqueue`, the send is stopped (SIGTERM) once it
        /// says "newly queued": the enqueue is what is measured.
        fn send_run(
            &self,
            dir: &Path,
            n: u64,
            case: &Case,
            stop_at_enqueue: bool,
        ) -> anyhow::Result<SendRun> {
            fs::create_dir_all(dir)?;
            let db = self.database(dir, case.backend)?;
            let s = Setup {
                dir,
                db: &db,
                transport: "smtp",
                port: self.port,
                signed: case.signed,
                other: case.other,
            };
            let import = self.prepare(&s, n)?;
            let log_len = fs::metadata(dir.join("letterpress.log")).map_or(0, |m| m.len());
            let sink_before = process_cpu(self.sink_pid);
            let start = Instant::now();
            let child = self
                .command(&s)?
                .args(self.send_args())
                .spawn()
                .context("starting letterpress send")?;
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let backends = match &db {
                Db::Postgres(pg) => {
                    let name = pg.url.rsplit('/').next().unwrap_or_default().to_string();
                    let done = done.clone();
                    Some(std::thread::spawn(move || backends_cpu(&name, &done)))
                }
                Db::Sqlite(_) => None,
            };
            let watcher = {
                let (log, done) = (dir.join("letterpress.log"), done.clone());
                let pid = child.id() as libc::pid_t;
                std::thread::spawn(move || {
                    let at = enqueued_at(&log, log_len, start, &done);
                    if stop_at_enqueue && at.is_some() {
                        // SAFETY: pid is our child, not yet reaped (the
                        // waiting thread reaps it only once it exits).
                        unsafe { libc::kill(pid, libc::SIGTERM) };
                    }
                    at
                })
            };
            let waited = wait_with_rusage(&child);
            let wall = start.elapsed();
            let sink = delta(sink_before, process_cpu(self.sink_pid));
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let enqueue = watcher.join().unwrap_or(None);
            let postgres = backends.and_then(|b| b.join().ok()).flatten();
            let waited = waited?;
            if waited.code != 0 && !stop_at_enqueue {
                bail!(
                    "letterpress send exited with {}; its log ends:\n{}",
                    waited.code,
                    log_tail(dir)
                );
            }
            let (delivered, failed) = self.counts(&s)?;
            if delivered == 0 && !stop_at_enqueue {
                bail!("nothing was delivered; log:\n{}", log_tail(dir));
            }
            Ok(SendRun {
                subscribers: n,
                import,
                delivered,
                failed,
                wall,
                enqueue,
                peak_rss_kib: waited.peak_rss_kib,
                cpu: Cpu {
                    own: waited.cpu,
                    sink,
                    postgres,
                },
            })
        }

        /// Sent and failed deliveries, from `letterpress status --json`.
        fn counts(&self, s: &Setup<'_>) -> anyhow::Result<(u64, u64)> {
            let out = self
                .command(s)?
                .args(["status", "--json"])
                .stdout(Stdio::piped())
                .output()
                .context("letterpress status")?;
            let json: serde_json::Value =
                serde_json::from_slice(&out.stdout).context("reading status --json")?;
            let issue = json
                .get(0)
                .ok_or_else(|| anyhow!("status --json lists no issue"))?;
            let field = |k: &str| issue.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
            Ok((field("sent"), field("failed")))
        }
    }

    fn delta(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
        Some(after?.saturating_sub(before?))
    }

    /// The `utime stime cutime cstime` of `/proc/PID/stat`, in seconds:
    /// fields 14 to 17, counted after the parenthesised command name.
    fn stat_times(stat: &str) -> Option<(String, [f64; 4])> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut out = [0.0; 4];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = fields.get(11 + i)?.parse::<f64>().ok()? / ticks;
        }
        Some((comm, out))
    }

    /// CPU (user + system) of the live process `pid` so far.
    fn process_cpu(pid: u32) -> Option<Duration> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, t) = stat_times(&stat)?;
        Some(Duration::from_secs_f64(t[0] + t[1]))
    }

    /// CPU of the PostgreSQL backends serving database `name` (their
    /// process title names it) until `done` is set: each backend's CPU as
    /// last read, sampled every 50 ms, summed (a backend's last 50 ms may
    /// be missed). `None` when none was seen (a server elsewhere). Other
    /// clients of the server do not count; its background processes
    /// (WAL writer, checkpointer, autovacuum) neither.
    fn backends_cpu(name: &str, done: &std::sync::atomic::AtomicBool) -> Option<Duration> {
        let needle = format!(" {name} ");
        let mut last: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
        loop {
            let finished = done.load(std::sync::atomic::Ordering::Relaxed);
            for entry in fs::read_dir("/proc").ok()?.flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if !pid.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                    continue;
                };
                if !String::from_utf8_lossy(&cmdline).contains(&needle) {
                    continue;
                }
                let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                    continue;
                };
                if let Some((comm, t)) = stat_times(&stat)
                    && comm == "postgres"
                {
                    last.insert(pid, t[0] + t[1]);
                }
            }
            if finished {
                break;
            }
            // Sampling other processes' counters: nothing to wait on.
            std::thread::sleep(Duration::from_millis(50));
        }
        (!last.is_empty()).then(|| Duration::from_secs_f64(last.values().sum()))
    }

    /// When the send's "newly queued" line appeared in its log (after
    /// `offset`), read every 20 ms until it does or `done` is set.
    fn enqueued_at(
        log: &Path,
        offset: u64,
        start: Instant,
        done: &std::sync::atomic::AtomicBool,
    ) -> Option<Duration> {
        loop {
            let finished = done.load(std::sync::atomic::Ordering::Relaxed);
            if let Ok(bytes) = fs::read(log)
                && let Some(new) = bytes.get(offset as usize..)
                && String::from_utf8_lossy(new).contains("newly queued")
            {
                return Some(start.elapsed());
            }
            if finished {
                return None;
            }
            // Polling a log file another process writes: there is no event
            // to wait on, and 20 ms is the resolution the figure needs.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `email,name` rows spread over a few domains.
    fn write_csv(path: &Path, n: u64) -> anyhow::Result<()> {
        const DOMAINS: [&str; 4] = ["example.com", "example.org", "example.net", "mail.example"];
        let mut out = std::io::BufWriter::new(fs::File::create(path)?);
        writeln!(out, "email,name")?;
        for i in 0..n {
            writeln!(
                out,
                "reader{i}@{},Reader {i}",
                DOMAINS[(i % DOMAINS.len() as u64) as usize]
            )?;
        }
        out.flush()?;
        Ok(())
    }

    /// What `wait4` says of a child that ended.
    struct Waited {
        /// The exit code, 128 + signal when killed.
        code: i32,
        /// Its own peak resident set size in KiB.
        peak_rss_kib: u64,
        /// Its user + system CPU time.
        cpu: Duration,
    }

    /// Waits for `child` and returns what `wait4` reports of it alone
    /// (not of other children of the bench).
    fn wait_with_rusage(child: &Child) -> anyhow::Result<Waited> {
        let pid = child.id() as libc::pid_t;
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: pid is our own un-reaped child; both pointers are valid.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if r == pid {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("waiting for a child");
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Ok(Waited {
            code,
            // Linux reports ru_maxrss in KiB.
            peak_rss_kib: usage.ru_maxrss.max(0) as u64,
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
        })
    }

    /// Starts smtp-sink on a free loopback port and waits until it accepts;
    /// with `dump`, it keeps every message it receives in that folder.
    fn start_sink(work: &Path, dump: Option<&Path>) -> anyhow::Result<(KillOnDrop, u16)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = fs::File::create(work.join("smtp-sink.log"))?;
        let mut cmd = Command::new(SMTP_SINK);
        // smtp-sink refuses to run as root without a user to drop to.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "nobody"]);
        }
        if let Some(dir) = dump {
            // One file per message, named by the time and a random number.
            cmd.arg("-d").arg(dir.join("%H%M%S."));
        }
        // No -c (counters) nor -v: quiet; no delays: it answers at once.
        let child = cmd
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting smtp-sink")?;
        let sink = KillOnDrop(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "smtp-sink did not listen on port {port} within 10 s: {}",
                    fs::read_to_string(work.join("smtp-sink.log")).unwrap_or_default()
                );
            }
            // Polling a port that is about to open; nothing to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok((sink, port))
    }

    /// `smtp-source -d -s CONNECTIONS -m MESSAGES [-l SIZE]` into the sink,
    /// with its CPU time and the sink's while it ran.
    fn source_run(
        port: u16,
        connections: u32,
        messages: u64,
        size: Option<u64>,
        ctx: &Ctx<'_>,
    ) -> anyhow::Result<SourceRun> {
        let mut cmd = Command::new(SMTP_SOURCE);
        cmd.arg("-d")
            .args(["-s", &connections.to_string()])
            .args(["-m", &messages.to_string()]);
        if let Some(size) = size {
            cmd.args(["-l", &size.to_string()]);
        }
        let errors_path = ctx.work.join("smtp-source.log");
        let errors = fs::File::create(&errors_path)?;
        let sink_before = process_cpu(ctx.sink_pid);
        let start = Instant::now();
        let child = cmd
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errors)
            .spawn()
            .context("running smtp-source")?;
        let waited = wait_with_rusage(&child)?;
        let wall = start.elapsed();
        let sink = delta(sink_before, process_cpu(ctx.sink_pid));
        if waited.code != 0 {
            let text = fs::read_to_string(&errors_path).unwrap_or_default();
            bail!("smtp-source failed (exit {}): {text}", waited.code);
        }
        Ok(SourceRun {
            messages,
            wall,
            cpu: Cpu {
                own: waited.cpu,
                sink,
                postgres: None,
            },
        })
    }

    /// One RSA-2048 signature's CPU time in seconds, as `openssl speed
    /// -seconds 3 rsa2048` reports it (`rsa 2048 bits 0.000243s …`).
    fn openssl_sign_time() -> Option<f64> {
        let out = Command::new("openssl")
            .args(["speed", "-seconds", "3", "rsa2048"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("rsa 2048 bits")?;
            rest.split_whitespace()
                .next()?
                .strip_suffix('s')?
                .parse()
                .ok()
        })
    }

    fn log_tail(dir: &Path) -> String {
        let text = fs::read_to_string(dir.join("letterpress.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn thousands(n: u64) -> String {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// Megabytes of 10^6 bytes, as the contract's target is written.
    fn mb(kib: u64) -> f64 {
        kib as f64 * 1024.0 / 1e6
    }

    fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// The load averages, as `uptime` shows them.
    fn load() -> String {
        fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| {
                let parts: Vec<&str> = l.split_whitespace().take(3).collect();
                (parts.len() == 3).then(|| format!("load average {}", parts.join(", ")))
            })
            .unwrap_or_else(|| "load average unknown".into())
    }
}
