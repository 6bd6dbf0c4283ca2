//! `lp-bench`: the end-to-end delivery benchmark (`make bench-e2e`).
//!
//! Measures the figures the product contract sets targets for:
//!
//! 1. messages per second that `letterpress send` reaches delivering the
//!    sample issue to `LP_BENCH_N` subscribers (default 100,000) through
//!    postfix's `smtp-sink`, with SQLite bookkeeping;
//! 2. what postfix's `smtp-source` reaches into the same sink with the same
//!    number of connections and messages of the same size, and the ratio;
//! 3. the peak resident memory of the send at `LP_BENCH_N` and at
//!    `LP_BENCH_BIG` subscribers (default 1,000,000), to show it is flat;
//! 4. as a bonus, CSV import speed (rows/s).
//!
//! It drives the release `letterpress` binary found next to itself, each
//! run in a fresh temporary folder with its own SQLite database and a
//! configuration made only of `LETTERPRESS_*` variables. Children's
//! progress output goes to log files in that folder; stdout carries only
//! the figures. Nothing is installed: without `smtp-sink` the bench says
//! how to get it and exits 0.
//!
//! Environment: `LP_BENCH_N`, `LP_BENCH_BIG` (0 skips the big run),
//! `LP_BENCH_CONNECTIONS` (default 8), `LP_BENCH_ROUNDS` (default 3: our
//! send and smtp-source alternate this many times, and the median round is
//! reported), `LP_BENCH_KEEP=1` keeps the temporary folder.

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
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, anyhow, bail};

    const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
    const SMTP_SOURCE: &str = "/usr/sbin/smtp-source";
    /// Stands in for any server secret: the bench only needs tokens that verify.
    const SECRET: &str = "lp-bench-secret-lp-bench-secret-lp-bench";

    /// What the environment asks for.
    struct Params {
        n: u64,
        big: u64,
        connections: u32,
        rounds: u64,
        keep: bool,
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
    }

    impl SourceRun {
        fn rate(&self) -> f64 {
            self.messages as f64 / self.wall.as_secs_f64()
        }
    }

    /// Kills the child it holds when dropped (the sink must not outlive the bench).
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub(crate) fn run() -> anyhow::Result<()> {
        if !Path::new(SMTP_SINK).exists() || !Path::new(SMTP_SOURCE).exists() {
            println!(
                "skipped: smtp-sink not found; install Debian's postfix package (apt-get install postfix)"
            );
            return Ok(());
        }
        let params = Params {
            n: env_u64("LP_BENCH_N", 100_000)?.max(1),
            big: env_u64("LP_BENCH_BIG", 1_000_000)?,
            connections: env_u64("LP_BENCH_CONNECTIONS", 8)?.clamp(1, 256) as u32,
            rounds: env_u64("LP_BENCH_ROUNDS", 3)?.clamp(1, 99),
            keep: std::env::var("LP_BENCH_KEEP").is_ok_and(|v| v == "1"),
        };
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
        println!("  issue        {}", issue.path.display());
        println!(
            "  subscribers  {} (LP_BENCH_N), {} (LP_BENCH_BIG)",
            thousands(params.n),
            thousands(params.big)
        );
        println!(
            "  connections  {} (LP_BENCH_CONNECTIONS)",
            params.connections
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
        let (sink, port) = start_sink(work)?;
        let ctx = Ctx {
            letterpress,
            repo,
            issue,
            port,
            connections: params.connections,
        };

        // The size of our messages, for smtp-source's -l: the same issue
        // written by the file transport, which writes exactly the bytes
        // the SMTP transport sends.
        let size = ctx.message_size(&work.join("size"))?;
        println!("\naverage message size: {} bytes", thousands(size));

        // The rate of a shared machine drifts by tens of percent within
        // minutes, smtp-source's as much as ours. So the two runs alternate,
        // round after round, and the median round is the figure: each ratio
        // compares runs made a few seconds apart.
        let mut rounds = Vec::new();
        for r in 1..=params.rounds {
            println!(
                "\n[1/4] round {r}/{}: letterpress send to {} subscribers",
                params.rounds,
                thousands(params.n)
            );
            let folder = work.join(format!("n{r}"));
            let ours = ctx.send_run(&folder, params.n)?;
            print_send(&ours);
            if !params.keep {
                let _ = fs::remove_dir_all(&folder);
            }
            println!(
                "\n[2/4] round {r}/{}: smtp-source, {} messages of {} bytes",
                params.rounds,
                thousands(params.n),
                thousands(size)
            );
            let source = source_run(port, params.connections, params.n, Some(size))?;
            print_source(&source);
            println!("  ratio this round: {:.0} %", ratio(&ours, &source));
            rounds.push((ours, source));
        }
        rounds.sort_by(|a, b| ratio(&a.0, &a.1).total_cmp(&ratio(&b.0, &b.1)));
        let ratios: Vec<String> = rounds
            .iter()
            .map(|(o, s)| format!("{:.0} %", ratio(o, s)))
            .collect();
        let (ours, source_sized) = rounds.swap_remove(rounds.len() / 2);
        println!(
            "\n[3/4] smtp-source, {} messages of its default size",
            thousands(params.n)
        );
        let source_plain = source_run(port, params.connections, params.n, None)?;
        print_source(&source_plain);

        let big = if params.big > 0 {
            println!(
                "\n[4/4] letterpress send to {} subscribers",
                thousands(params.big)
            );
            let big = ctx.send_run(&work.join("big"), params.big)?;
            print_send(&big);
            Some(big)
        } else {
            println!("\n[4/4] skipped (LP_BENCH_BIG=0)");
            None
        };
        drop(sink);

        summary(
            params,
            size,
            &ours,
            &source_sized,
            &source_plain,
            big.as_ref(),
            &ratios,
        );
        Ok(())
    }

    /// Ours against smtp-source's, in percent.
    fn ratio(ours: &SendRun, source: &SourceRun) -> f64 {
        ours.rate() / source.rate() * 100.0
    }

    fn print_source(r: &SourceRun) {
        println!(
            "  {:.2} s, {} msgs/s",
            r.wall.as_secs_f64(),
            thousands(r.rate() as u64)
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
    }

    fn summary(
        params: &Params,
        size: u64,
        ours: &SendRun,
        sized: &SourceRun,
        plain: &SourceRun,
        big: Option<&SendRun>,
        ratios: &[String],
    ) {
        let median = ratio(ours, sized);
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nsummary ({} connections; the median of {} rounds, whose ratios were {})",
            params.connections,
            ratios.len(),
            ratios.join(", ")
        );
        let _ = writeln!(t, "  {:<52} {:>12} {:>10}", "what", "figure", "target");
        let mut row = |what: String, figure: String, target: &str| {
            let _ = writeln!(t, "  {what:<52} {figure:>12} {target:>10}");
        };
        row(
            format!(
                "letterpress send, {} subscribers",
                thousands(ours.subscribers)
            ),
            format!("{} msg/s", thousands(ours.rate() as u64)),
            "",
        );
        if let Some(rate) = ours.delivery_rate() {
            row(
                "  of which the delivery loop (after the enqueue)".into(),
                format!("{} msg/s", thousands(rate as u64)),
                "",
            );
        }
        row(
            format!("smtp-source -l {size} (our message size)"),
            format!("{} msg/s", thousands(sized.rate() as u64)),
            "",
        );
        row(
            "smtp-source, default size".into(),
            format!("{} msg/s", thousands(plain.rate() as u64)),
            "",
        );
        row(
            "ratio letterpress / smtp-source (same size)".into(),
            format!("{median:.0} %"),
            ">= 90 %",
        );
        row(
            format!(
                "peak RSS of send, {} subscribers",
                thousands(ours.subscribers)
            ),
            format!("{:.1} MB", mb(ours.peak_rss_kib)),
            "<= 40 MB",
        );
        if let Some(big) = big {
            row(
                format!(
                    "peak RSS of send, {} subscribers",
                    thousands(big.subscribers)
                ),
                format!("{:.1} MB", mb(big.peak_rss_kib)),
                "<= 40 MB",
            );
            row(
                format!(
                    "letterpress send, {} subscribers",
                    thousands(big.subscribers)
                ),
                format!("{} msg/s", thousands(big.rate() as u64)),
                "",
            );
            row(
                format!("CSV import, {} rows", thousands(big.subscribers)),
                format!("{} rows/s", thousands(big.import_rate() as u64)),
                ">= 100k/s",
            );
        } else {
            row(
                format!("CSV import, {} rows", thousands(ours.subscribers)),
                format!("{} rows/s", thousands(ours.import_rate() as u64)),
                ">= 100k/s",
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
            "quick run: LP_BENCH_N=10000 LP_BENCH_BIG=0 make bench-e2e"
        );
        print!("{t}");
    }

    /// What every `letterpress` run of the bench shares.
    struct Ctx<'a> {
        letterpress: &'a Path,
        repo: &'a Path,
        issue: &'a Issue,
        port: u16,
        connections: u32,
    }

    impl Ctx<'_> {
        /// `letterpress ARGS` in `dir` with the bench's configuration; its
        /// stdout and stderr are appended to `dir/letterpress.log`.
        fn command(&self, dir: &Path, transport: &str) -> anyhow::Result<Command> {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("letterpress.log"))
                .context("opening the log")?;
            let mut cmd = Command::new(self.letterpress);
            // Nothing from the caller's environment may change the setup.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("LETTERPRESS_") {
                    cmd.env_remove(key);
                }
            }
            cmd.current_dir(dir)
                .arg("--config")
                .arg(dir.join("none.toml"))
                .env(
                    "LETTERPRESS_DATABASE__URL",
                    format!("sqlite://{}/lp.db", dir.display()),
                )
                .env("LETTERPRESS_SERVER__SECRET", SECRET)
                .env("LETTERPRESS_CONTENT__ROOT", &self.issue.content_root)
                .env(
                    "LETTERPRESS_CONTENT__TEMPLATE",
                    self.repo.join("templates/default.mjml"),
                )
                .env("LETTERPRESS_DELIVERY__TRANSPORT", transport)
                .env("LETTERPRESS_DELIVERY__OUTBOX_DIR", dir.join("outbox"))
                .env(
                    "LETTERPRESS_DELIVERY__SMTP_URL",
                    format!("smtp://127.0.0.1:{}", self.port),
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
            Ok(cmd)
        }

        /// A fresh folder with a migrated database holding `n` subscribers;
        /// returns how long the import took.
        fn prepare(&self, dir: &Path, n: u64, transport: &str) -> anyhow::Result<Duration> {
            fs::create_dir_all(dir)?;
            fs::write(dir.join("none.toml"), "")?;
            let csv = dir.join("subscribers.csv");
            write_csv(&csv, n)?;
            self.checked(dir, transport, &["migrate"])?;
            let start = Instant::now();
            self.checked(
                dir,
                transport,
                &["subscribers", "import", &csv.to_string_lossy()],
            )?;
            let took = start.elapsed();
            // The CSV is large at a million rows and no longer needed.
            let _ = fs::remove_file(&csv);
            Ok(took)
        }

        fn checked(&self, dir: &Path, transport: &str, args: &[&str]) -> anyhow::Result<()> {
            let status = self
                .command(dir, transport)?
                .args(args)
                .status()
                .with_context(|| format!("starting letterpress {}", args.join(" ")))?;
            if !status.success() {
                bail!(
                    "letterpress {} failed ({status}); its log ends:\n{}",
                    args.join(" "),
                    log_tail(dir)
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
        fn message_size(&self, dir: &Path) -> anyhow::Result<u64> {
            self.prepare(dir, 20, "file")?;
            self.checked(
                dir,
                "file",
                &self
                    .send_args()
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            )?;
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

        /// Imports `n` subscribers, then times `letterpress send` over SMTP
        /// into the sink and takes its peak RSS.
        fn send_run(&self, dir: &Path, n: u64) -> anyhow::Result<SendRun> {
            let import = self.prepare(dir, n, "smtp")?;
            let log_len = fs::metadata(dir.join("letterpress.log")).map_or(0, |m| m.len());
            let start = Instant::now();
            let child = self
                .command(dir, "smtp")?
                .args(self.send_args())
                .spawn()
                .context("starting letterpress send")?;
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let watcher = {
                let (log, done) = (dir.join("letterpress.log"), done.clone());
                std::thread::spawn(move || enqueued_at(&log, log_len, start, &done))
            };
            let waited = wait_with_rusage(&child);
            let wall = start.elapsed();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let enqueue = watcher.join().unwrap_or(None);
            let (status, peak_rss_kib) = waited?;
            if status != 0 {
                bail!(
                    "letterpress send exited with {status}; its log ends:\n{}",
                    log_tail(dir)
                );
            }
            let (delivered, failed) = self.counts(dir)?;
            if delivered == 0 {
                bail!("nothing was delivered; log:\n{}", log_tail(dir));
            }
            Ok(SendRun {
                subscribers: n,
                import,
                delivered,
                failed,
                wall,
                enqueue,
                peak_rss_kib,
            })
        }

        /// Sent and failed deliveries, from `letterpress status --json`.
        fn counts(&self, dir: &Path) -> anyhow::Result<(u64, u64)> {
            let out = self
                .command(dir, "smtp")?
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

    /// Waits for `child` and returns its exit code (128 + signal when
    /// killed) and its own peak resident set size in KiB (wait4 reports
    /// the child's rusage alone, not that of other children).
    fn wait_with_rusage(child: &Child) -> anyhow::Result<(i32, u64)> {
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
                return Err(err).context("waiting for letterpress send");
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        // Linux reports ru_maxrss in KiB.
        Ok((code, usage.ru_maxrss.max(0) as u64))
    }

    /// Starts smtp-sink on a free loopback port and waits until it accepts.
    fn start_sink(work: &Path) -> anyhow::Result<(KillOnDrop, u16)> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = fs::File::create(work.join("smtp-sink.log"))?;
        let mut cmd = Command::new(SMTP_SINK);
        // smtp-sink refuses to run as root without a user to drop to.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "nobody"]);
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

    /// `smtp-source -d -s CONNECTIONS -m MESSAGES [-l SIZE]` into the sink.
    fn source_run(
        port: u16,
        connections: u32,
        messages: u64,
        size: Option<u64>,
    ) -> anyhow::Result<SourceRun> {
        let mut cmd = Command::new(SMTP_SOURCE);
        cmd.arg("-d")
            .args(["-s", &connections.to_string()])
            .args(["-m", &messages.to_string()]);
        if let Some(size) = size {
            cmd.args(["-l", &size.to_string()]);
        }
        let start = Instant::now();
        let out = cmd
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .output()
            .context("running smtp-source")?;
        let wall = start.elapsed();
        if !out.status.success() {
            bail!(
                "smtp-source failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(SourceRun { messages, wall })
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
