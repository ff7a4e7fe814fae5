//! Downloading an upgrade binary: `http`, `https` or `file` URLs, a size cap, a time limit,
//! retries for transient failures, and progress (a bar on a terminal, log lines otherwise).
//!
//! The bytes go to a temporary file in the directory where the binary will live, so the final
//! step is a rename, and a crash leaves only a temporary that [`crate::home::Home::
//! remove_temporaries`] clears: a half-finished download never blocks a retry and is never used.

use anyhow::{Context, Result, bail};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vexidus_upgrade_contract::BinarySource as Source;

/// Limits of a download.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Largest accepted binary, in bytes.
    pub max_bytes: u64,
    /// Time limit of one attempt, connection to last byte.
    pub timeout: Duration,
    /// Attempts for transient failures (timeouts, connection errors, 5xx, truncated bodies).
    pub attempts: u32,
    /// Pause before the second attempt; doubles after each.
    pub retry_delay: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            timeout: Duration::from_secs(600),
            attempts: 3,
            retry_delay: Duration::from_secs(2),
        }
    }
}

/// A failed attempt, and whether trying again could help.
#[derive(Debug)]
struct AttemptError {
    error: anyhow::Error,
    transient: bool,
}

fn permanent(error: anyhow::Error) -> AttemptError {
    AttemptError {
        error,
        transient: false,
    }
}

fn transient(error: anyhow::Error) -> AttemptError {
    AttemptError {
        error,
        transient: true,
    }
}

/// Downloads `url` into a temporary file in `dir` and returns its path. The caller verifies
/// it and renames it into place (or deletes it). `stop` aborts the download between chunks.
pub fn download(url: &str, dir: &Path, opts: &FetchOptions, stop: &AtomicBool) -> Result<PathBuf> {
    let source = Source::parse(url).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = crate::home::temp_path(&dir.join(crate::home::BINARY));
    let mut delay = opts.retry_delay;
    let mut attempt = 1;
    loop {
        let result = attempt_once(&source, url, &tmp, opts, stop);
        match result {
            Ok(bytes) => {
                crate::log::info(
                    "download_done",
                    &[("url", url), ("bytes", &bytes.to_string())],
                );
                return Ok(tmp);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if stop.load(Ordering::SeqCst) {
                    bail!("download of {url} interrupted by a signal");
                }
                if !e.transient || attempt >= opts.attempts {
                    return Err(e.error.context(format!(
                        "download of {url} failed (attempt {attempt} of {})",
                        opts.attempts
                    )));
                }
                crate::log::warn(
                    "download_retry",
                    &[
                        ("url", url),
                        ("attempt", &attempt.to_string()),
                        ("error", &format!("{:#}", e.error)),
                        ("retry_in_s", &delay.as_secs_f64().to_string()),
                    ],
                );
                crate::stop::sleep_unless(stop, delay);
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

fn attempt_once(
    source: &Source,
    url: &str,
    tmp: &Path,
    opts: &FetchOptions,
    stop: &AtomicBool,
) -> Result<u64, AttemptError> {
    match source {
        Source::File(path) => {
            // Only a regular file: opening a FIFO or a device would block or never end.
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot open {}", path.display()))
                .map_err(permanent)?;
            if !meta.is_file() {
                return Err(permanent(anyhow::anyhow!(
                    "{} is not a regular file ({:?})",
                    path.display(),
                    meta.file_type()
                )));
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))
                .map_err(permanent)?;
            if !f.metadata().is_ok_and(|m| m.is_file()) {
                return Err(permanent(anyhow::anyhow!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            let len = f.metadata().map(|m| m.len()).ok();
            copy_capped(f, len, tmp, opts, url, stop, Instant::now())
        }
        Source::Http(url) => {
            let started = Instant::now();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(opts.timeout))
                .timeout_connect(Some(opts.timeout.min(Duration::from_secs(30))))
                .http_status_as_error(false)
                .max_redirects(5)
                .build()
                .into();
            let resp = agent.get(url).call().map_err(|e| {
                let t = matches!(
                    e,
                    ureq::Error::Timeout(_)
                        | ureq::Error::Io(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                );
                AttemptError {
                    error: anyhow::Error::new(e),
                    transient: t,
                }
            })?;
            let status = resp.status().as_u16();
            if status != 200 {
                let e = anyhow::anyhow!("{url} answered HTTP {status}");
                return Err(if status >= 500 || status == 429 || status == 408 {
                    transient(e)
                } else {
                    permanent(e)
                });
            }
            let len = resp
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let reader = resp
                .into_body()
                .into_with_config()
                .limit(opts.max_bytes.saturating_add(1))
                .reader();
            copy_capped(reader, len, tmp, opts, url, stop, started)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn copy_capped(
    mut reader: impl Read,
    len: Option<u64>,
    tmp: &Path,
    opts: &FetchOptions,
    url: &str,
    stop: &AtomicBool,
    started: Instant,
) -> Result<u64, AttemptError> {
    if let Some(len) = len
        && len > opts.max_bytes
    {
        return Err(permanent(anyhow::anyhow!(
            "{url} is {len} bytes, over the {} byte cap (--max-download-bytes)",
            opts.max_bytes
        )));
    }
    let mut file = crate::home::create_temp(tmp).map_err(permanent)?;
    let mut progress = Progress::new(url, len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total: u64 = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(permanent(anyhow::anyhow!("interrupted")));
        }
        if started.elapsed() > opts.timeout {
            return Err(transient(anyhow::anyhow!(
                "timed out after {} s",
                opts.timeout.as_secs()
            )));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(transient(
                    anyhow::Error::new(e).context(format!("reading {url} after {total} bytes")),
                ));
            }
        };
        total += n as u64;
        if total > opts.max_bytes {
            return Err(permanent(anyhow::anyhow!(
                "{url} sent more than the {} byte cap (--max-download-bytes)",
                opts.max_bytes
            )));
        }
        file.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", tmp.display()))
            .map_err(permanent)?;
        progress.update(total);
        if total >= (len.unwrap_or(u64::MAX) / 2).max(1) {
            crate::test_hook::point("download-half");
        }
    }
    progress.finish(total);
    if let Some(len) = len
        && total != len
    {
        return Err(transient(anyhow::anyhow!(
            "{url} ended after {total} of {len} bytes (truncated body)"
        )));
    }
    file.sync_all()
        .with_context(|| format!("cannot sync {}", tmp.display()))
        .map_err(permanent)?;
    Ok(total)
}

/// The progress bar's template when the length is known.
const BAR: &str =
    "vexvisor: downloading [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}";
/// Its template when it is not.
const SPINNER: &str = "vexvisor: downloading {bytes} {bytes_per_sec}";

/// A progress bar on a terminal (indicatif), log lines every 10% (or every 16 MiB without a
/// length) otherwise.
struct Progress {
    url: String,
    len: Option<u64>,
    /// The bar, when stderr is a terminal.
    bar: Option<indicatif::ProgressBar>,
    next_log: u64,
}

impl Progress {
    fn new(url: &str, len: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match len {
                Some(l) => indicatif::ProgressBar::new(l),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(Self::style(len));
            bar
        });
        Self {
            url: url.to_string(),
            len,
            bar,
            next_log: Self::log_step(len),
        }
    }

    /// The bar's look: with a length, a bar, the percentage, bytes done of the total and the
    /// rate; without one, bytes done and the rate.
    fn style(len: Option<u64>) -> indicatif::ProgressStyle {
        let template = if len.is_some() { BAR } else { SPINNER };
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("#> ")
    }

    fn log_step(len: Option<u64>) -> u64 {
        len.map(|l| (l / 10).max(1)).unwrap_or(16 << 20)
    }

    fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if done >= self.next_log {
            self.next_log = done + Self::log_step(self.len);
            let mut fields = vec![("url", self.url.clone()), ("bytes", done.to_string())];
            if let Some(l) = self.len {
                fields.push(("total", l.to_string()));
                fields.push(("percent", (done * 100 / l.max(1)).to_string()));
            }
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            crate::log::info("download_progress", &f);
        }
    }

    fn finish(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both looks of the bar parse (a template error would silently fall back to the default
    /// bar), and the bar counts bytes as the download reports them.
    #[test]
    fn the_progress_bar_templates_parse_and_the_bar_follows_the_bytes() {
        for template in [BAR, SPINNER] {
            assert!(
                indicatif::ProgressStyle::with_template(template).is_ok(),
                "{template}"
            );
        }
        let bar = indicatif::ProgressBar::hidden();
        bar.set_length(1000);
        bar.set_style(Progress::style(Some(1000)));
        let mut p = Progress {
            url: "file:///x".into(),
            len: Some(1000),
            bar: Some(bar.clone()),
            next_log: 100,
        };
        p.update(250);
        assert_eq!(bar.position(), 250);
        p.finish(1000);
        assert_eq!(bar.position(), 1000);
        assert!(bar.is_finished());
    }

    #[test]
    fn file_downloads_are_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::write(&src, vec![1u8; 1000]).expect("write");
        let stop = AtomicBool::new(false);
        let url = format!("file://{}", src.display());
        let opts = FetchOptions {
            max_bytes: 999,
            ..FetchOptions::default()
        };
        let err = download(&url, &dir.path().join("d"), &opts, &stop).expect_err("over the cap");
        assert!(format!("{err:#}").contains("cap"), "{err:#}");
        let opts = FetchOptions {
            max_bytes: 1000,
            ..FetchOptions::default()
        };
        let tmp = download(&url, &dir.path().join("d"), &opts, &stop).expect("within the cap");
        assert_eq!(std::fs::read(tmp).expect("read").len(), 1000);
    }

    #[test]
    fn a_file_url_to_a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let stop = AtomicBool::new(false);
        let url = format!("file://{}", fifo.display());
        let started = Instant::now();
        let e = download(&url, &dir.path().join("d"), &FetchOptions::default(), &stop)
            .expect_err("refused");
        assert!(format!("{e:#}").contains("not a regular file"), "{e:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
