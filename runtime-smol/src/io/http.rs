//! HTTP for cooperative origin downloads: `HEAD` for what the origin holds, ranged `GET`s
//! for the machine's `FetchRange`, and a plain `GET` when the origin has no ranges.
//!
//! Everything here blocks (ureq): callers run it on smol's blocking pool with
//! `smol::unblock`. One agent per process keeps connections alive between ranges (ureq's
//! pool), so a participant reuses a warm connection for its next range instead of paying a
//! handshake and TCP's slow start again. The pool keeps up to [`IDLE_PER_HOST_MAX`]
//! connections per origin: enough for every range a participant keeps in flight
//! (`RANGES_PER_SLOT` per slot) beside its spot checks.
//!
//! Ranges fetched for another peer's job go through a helper's own agent
//! ([`helping_agent`]), which connects only to addresses its [`OriginPolicy`] allows,
//! follows redirects itself, checking each, and tells the fetcher only coarse reasons.

use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use p2p_core::peer::RangeError;
use ureq::Agent;
use ureq::config::Config;
use ureq::http::{HeaderMap, Response, Uri};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::origin_policy::OriginPolicy;

/// Connecting to the origin.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From the request sent to the response's head.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole range's body (1 MiB by default).
const RANGE_BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Idle connections kept per origin host (ureq keeps 3 by default: fewer than a participant
/// with two slots keeps busy, so connections were closed and opened again between ranges).
const IDLE_PER_HOST_MAX: usize = 32;
/// Idle connections kept over every host.
const IDLE_MAX: usize = 64;
/// Most redirects a helper follows for one range.
const HELPER_REDIRECTS_MAX: u32 = 5;

/// What a helper tells a fetcher when its origin policy refuses the URL or a redirect.
pub const REFUSED_BY_POLICY: &str = "refused by origin policy";
/// What a helper tells a fetcher when the origin could not be reached or spoke no HTTP:
/// nothing finer (refused, timed out, not HTTP), so a member cannot map what the helper
/// reaches. The details go to the helper's log.
pub const ORIGIN_ERROR: &str = "origin error";

/// What `HEAD` says about the file at a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginInfo {
    pub size: u64,
    /// `ETag` when the origin gives a strong one, else `Last-Modified`, else a weak `ETag`,
    /// else empty.
    pub validator: String,
    /// `Accept-Ranges: bytes`.
    pub ranges: bool,
}

impl OriginInfo {
    /// The key the tracker knows a fetched file by.
    pub fn origin_key(&self, url: &str) -> String {
        format!("{url} {}", self.validator)
    }
}

fn agent(body_timeout: Option<Duration>) -> Agent {
    static RANGES: OnceLock<Agent> = OnceLock::new();
    static WHOLE: OnceLock<Agent> = OnceLock::new();
    let make = |body: Option<Duration>| -> Agent {
        Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_recv_body(body)
            .max_idle_connections(IDLE_MAX)
            .max_idle_connections_per_host(IDLE_PER_HOST_MAX)
            .user_agent(concat!("p2p/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    };
    match body_timeout {
        Some(t) => RANGES.get_or_init(|| make(Some(t))).clone(),
        None => WHOLE.get_or_init(|| make(None)).clone(),
    }
}

/// The agent a helper fetches others' ranges with. Its resolver hands ureq only addresses
/// the policy allowed, so the connection goes to what was checked (no second lookup for a
/// rebinding DNS server to answer differently); it follows no redirects itself (see
/// [`fetch_range_helping`]) and uses no proxy from the environment (a proxy would resolve
/// and connect on the helper's behalf, past the policy).
pub fn helping_agent(policy: OriginPolicy) -> Agent {
    let config: Config = Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_recv_body(Some(RANGE_BODY_TIMEOUT))
        .max_idle_connections(IDLE_MAX)
        .max_idle_connections_per_host(IDLE_PER_HOST_MAX)
        .user_agent(concat!("p2p/", env!("CARGO_PKG_VERSION")))
        .max_redirects(0)
        .proxy(None)
        .build();
    let resolver = PolicyResolver {
        policy,
        inner: DefaultResolver::default(),
    };
    Agent::with_parts(config, DefaultConnector::default(), resolver)
}

/// Resolves like ureq does, then refuses unless the policy allows every address.
#[derive(Debug)]
struct PolicyResolver {
    policy: OriginPolicy,
    inner: DefaultResolver,
}

/// The policy's refusal, carried through ureq's error as the payload of an I/O error.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let scheme = uri.scheme_str().unwrap_or("");
        let host = uri.host().unwrap_or("");
        let port = uri
            .port_u16()
            .unwrap_or(if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            });
        let refuse = |why| ureq::Error::Io(std::io::Error::other(Refused(why)));
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
        self.policy
            .check(scheme, host, port, &ips)
            .map_err(refuse)?;
        Ok(addrs)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The validator a response carries, chosen like `head` chooses it.
fn validator_of(headers: &HeaderMap) -> String {
    let etag = header(headers, "etag").filter(|e| !e.is_empty());
    let modified = header(headers, "last-modified").filter(|m| !m.is_empty());
    match (etag, modified) {
        (Some(e), _) if !e.starts_with("W/") => e.to_string(),
        (_, Some(m)) => m.to_string(),
        (Some(weak), None) => weak.to_string(),
        (None, None) => String::new(),
    }
}

/// `If-Range` needs a strong `ETag` or a date.
fn usable_for_if_range(validator: &str) -> bool {
    !validator.is_empty() && !validator.starts_with("W/")
}

/// `HEAD url`: size, validator, range support.
pub fn head(url: &str) -> anyhow::Result<OriginInfo> {
    let response = agent(Some(RANGE_BODY_TIMEOUT))
        .head(url)
        .call()
        .map_err(|e| anyhow::anyhow!("HEAD {url}: {e}"))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        anyhow::bail!("HEAD {url}: the origin answered {status}");
    }
    let headers = response.headers();
    let size = header(headers, "content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("HEAD {url}: no Content-Length, so the size is unknown"))?;
    let ranges = header(headers, "accept-ranges")
        .is_some_and(|r| r.split(',').any(|u| u.trim().eq_ignore_ascii_case("bytes")));
    Ok(OriginInfo {
        size,
        validator: validator_of(headers),
        ranges,
    })
}

fn fatal(reason: String) -> RangeError {
    RangeError {
        fatal: true,
        refused: false,
        reason,
    }
}

fn retryable(reason: String) -> RangeError {
    RangeError {
        fatal: false,
        refused: false,
        reason,
    }
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` → (first, last, total or None for `*`).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.trim().split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total))
}

/// Bytes read from a range's body at a time: between pieces a cancelled fetch stops.
const BODY_PIECE_LEN: usize = 64 * 1024;

/// Fetches `length` bytes at `offset` with `Range` and `If-Range: validator`, and checks
/// that the origin sent exactly those bytes of the same file.
///
/// `206` with the right `Content-Range` and the full body → the bytes. A `200` (the origin
/// ignored the range or `If-Range` failed: the file changed), another validator, a wrong
/// `Content-Range`, a short body or a `4xx` → fatal. `5xx` and transport errors → retryable.
///
/// `cancel` set stops the fetch between pieces of the body (a retryable error): the
/// machine no longer wants the bytes, so the link is not spent on them.
pub fn fetch_range(
    url: &str,
    validator: &str,
    offset: u64,
    length: u32,
    cancel: &AtomicBool,
) -> Result<Bytes, RangeError> {
    if length == 0 {
        return Ok(Bytes::new());
    }
    let last = offset + u64::from(length) - 1;
    let mut request = agent(Some(RANGE_BODY_TIMEOUT))
        .get(url)
        .header("Range", format!("bytes={offset}-{last}"));
    if usable_for_if_range(validator) {
        request = request.header("If-Range", validator);
    }
    let response = request
        .call()
        .map_err(|e| retryable(format!("GET {url} bytes {offset}-{last}: {e}")))?;
    check_and_read(response, validator, offset, length, cancel)
}

/// How a helper's fetch for another peer failed, before it is made coarse.
enum HelpFailure {
    /// The policy refused the URL or a redirect: the detail.
    Refused(String),
    /// No HTTP answer: connection, TLS, protocol, timeout; the detail.
    Transport(String),
    /// The origin answered, and not with the range.
    Origin(RangeError),
}

/// [`fetch_range`] for another peer's job, with the helper's [`helping_agent`]: redirects
/// are followed here (at most [`HELPER_REDIRECTS_MAX`], never from https to http) so each
/// target meets the policy before anything is sent to it. The fetcher learns
/// [`REFUSED_BY_POLICY`], [`ORIGIN_ERROR`], or what an allowed origin answered; the details
/// are logged here.
pub fn fetch_range_helping(
    agent: &Agent,
    url: &str,
    validator: &str,
    offset: u64,
    length: u32,
    cancel: &AtomicBool,
) -> Result<Bytes, RangeError> {
    match follow_redirects(agent, url, validator, offset, length, cancel) {
        Ok(data) => Ok(data),
        Err(HelpFailure::Refused(why)) => {
            tracing::info!(%url, "not fetching for a peer: {why}");
            Err(RangeError {
                fatal: false,
                refused: true,
                reason: REFUSED_BY_POLICY.into(),
            })
        }
        Err(HelpFailure::Transport(why)) => {
            tracing::info!(%url, offset, length, "range for a peer failed: {why}");
            Err(retryable(ORIGIN_ERROR.into()))
        }
        Err(HelpFailure::Origin(error)) => {
            tracing::info!(%url, offset, length, fatal = error.fatal, "range for a peer failed: {}", error.reason);
            // A fatal answer (the file changed, a 4xx) is the job's end, and the fetcher's
            // user needs to know which: an origin the policy allowed said it over HTTP.
            // Retryable ones (5xx, a body cut short) say nothing the fetcher can act on.
            let reason = if error.fatal {
                format!("{ORIGIN_ERROR}: {}", error.reason)
            } else {
                ORIGIN_ERROR.into()
            };
            Err(RangeError { reason, ..error })
        }
    }
}

fn follow_redirects(
    agent: &Agent,
    url: &str,
    validator: &str,
    offset: u64,
    length: u32,
    cancel: &AtomicBool,
) -> Result<Bytes, HelpFailure> {
    if length == 0 {
        return Ok(Bytes::new());
    }
    let last = offset + u64::from(length) - 1;
    let mut url = url.to_string();
    for _ in 0..=HELPER_REDIRECTS_MAX {
        let uri: Uri = url
            .parse()
            .map_err(|e| HelpFailure::Refused(format!("{url} is not a URL: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(HelpFailure::Refused(format!(
                "{url}: the scheme is not http or https"
            )));
        }
        let mut request = agent
            .get(&url)
            .header("Range", format!("bytes={offset}-{last}"));
        if usable_for_if_range(validator) {
            request = request.header("If-Range", validator);
        }
        let response = request.call().map_err(|e| match refusal_in(&e) {
            Some(why) => HelpFailure::Refused(why),
            None => HelpFailure::Transport(format!("GET {url} bytes {offset}-{last}: {e}")),
        })?;
        if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
            return check_and_read(response, validator, offset, length, cancel)
                .map_err(HelpFailure::Origin);
        }
        let Some(next) = header(response.headers(), "location").and_then(|l| join(&uri, l)) else {
            return Err(HelpFailure::Origin(fatal(format!(
                "{url} redirects without a usable Location"
            ))));
        };
        if scheme == "https" && !next.to_ascii_lowercase().starts_with("https://") {
            return Err(HelpFailure::Refused(format!(
                "{url} redirects from https to {next}"
            )));
        }
        tracing::debug!(from = %url, to = %next, "following a redirect for a peer");
        url = next;
    }
    Err(HelpFailure::Origin(fatal(format!(
        "more than {HELPER_REDIRECTS_MAX} redirects"
    ))))
}

/// The policy's refusal inside a ureq error, if that is what it is.
fn refusal_in(error: &ureq::Error) -> Option<String> {
    match error {
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Refused>())
            .map(|refused| refused.0.clone()),
        _ => None,
    }
}

/// A redirect's `Location` as an absolute URL, relative to the URL that answered it.
fn join(base: &Uri, location: &str) -> Option<String> {
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    Some(if location.starts_with("//") {
        format!("{scheme}:{location}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.contains("://") {
        location.to_string()
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{scheme}://{authority}{dir}{location}")
    })
}

fn check_and_read(
    response: Response<ureq::Body>,
    validator: &str,
    offset: u64,
    length: u32,
    cancel: &AtomicBool,
) -> Result<Bytes, RangeError> {
    let last = offset + u64::from(length) - 1;
    let status = response.status().as_u16();
    match status {
        206 => {}
        200 => {
            return Err(fatal(format!(
                "the origin answered 200 (the whole file) to a request for bytes {offset}-{last}: \
                 the file changed since the job started (If-Range failed) or the origin ignores ranges"
            )));
        }
        416 => {
            return Err(fatal(format!(
                "the origin answered 416 for bytes {offset}-{last}: the file is shorter than when the job started"
            )));
        }
        s if (400..500).contains(&s) => {
            return Err(fatal(format!(
                "the origin refused bytes {offset}-{last} with {s}"
            )));
        }
        s if s >= 500 => {
            return Err(retryable(format!(
                "the origin answered {s} for bytes {offset}-{last}"
            )));
        }
        s => {
            return Err(fatal(format!(
                "the origin answered {s} for bytes {offset}-{last} instead of 206"
            )));
        }
    }
    let headers = response.headers();
    let got = validator_of(headers);
    if !validator.is_empty() && !got.is_empty() && got != validator {
        return Err(fatal(format!(
            "the file changed at the origin: validator {got} instead of {validator}"
        )));
    }
    match header(headers, "content-range").and_then(parse_content_range) {
        Some((first, end, _)) if first == offset && end == last => {}
        Some((first, end, _)) => {
            return Err(fatal(format!(
                "the origin sent bytes {first}-{end} when asked for {offset}-{last}"
            )));
        }
        None => {
            return Err(fatal(format!(
                "the origin's 206 for bytes {offset}-{last} has no usable Content-Range"
            )));
        }
    }
    let mut data = Vec::with_capacity(length as usize);
    // One byte more than asked: a longer body is as wrong as a shorter one.
    let mut reader = response
        .into_body()
        .into_reader()
        .take(u64::from(length) + 1);
    let mut piece = vec![0; BODY_PIECE_LEN];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(retryable(format!("bytes {offset}-{last}: cancelled")));
        }
        match reader.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(retryable(format!(
                    "reading bytes {offset}-{last} from the origin: {e}"
                )));
            }
        }
    }
    if data.len() != length as usize {
        return Err(fatal(format!(
            "the origin sent {} bytes for bytes {offset}-{last} ({length} asked): a short or long body",
            data.len()
        )));
    }
    Ok(Bytes::from(data))
}

/// A plain `GET` of the whole file into `file` (origins without ranges). Returns the bytes
/// written; fails if the validator changed since `HEAD` or the body is not `size` long.
pub fn fetch_whole(
    url: &str,
    info: &OriginInfo,
    file: &File,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<u64> {
    let response = agent(None)
        .get(url)
        .call()
        .map_err(|e| anyhow::anyhow!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        anyhow::bail!("GET {url}: the origin answered {status}");
    }
    let got = validator_of(response.headers());
    if !info.validator.is_empty() && !got.is_empty() && got != info.validator {
        anyhow::bail!(
            "the file changed at the origin since HEAD: validator {got} instead of {}",
            info.validator
        );
    }
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| anyhow::anyhow!("GET {url}: reading the body: {e}"))?;
        if n == 0 {
            break;
        }
        if done + n as u64 > info.size {
            anyhow::bail!(
                "GET {url}: the body is longer than the {} bytes HEAD announced",
                info.size
            );
        }
        file.write_all_at(&buf[..n], done)?;
        done += n as u64;
        progress(done);
    }
    if done != info.size {
        anyhow::bail!(
            "GET {url}: the body has {done} bytes, HEAD announced {}",
            info.size
        );
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
    }

    #[test]
    fn locations_resolve_against_the_url_that_answered() {
        let base: Uri = "https://a.example:8443/dir/file?x=1".parse().unwrap();
        let cases = [
            ("http://b/x", "http://b/x"),
            ("//c/y", "https://c/y"),
            ("/z?q=http://d/", "https://a.example:8443/z?q=http://d/"),
            ("other", "https://a.example:8443/dir/other"),
        ];
        for (location, want) in cases {
            assert_eq!(join(&base, location).as_deref(), Some(want), "{location}");
        }
    }

    #[test]
    fn if_range_only_with_strong_validators() {
        assert!(usable_for_if_range("\"abc\""));
        assert!(usable_for_if_range("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert!(!usable_for_if_range("W/\"abc\""));
        assert!(!usable_for_if_range(""));
    }
}
