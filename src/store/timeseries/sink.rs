//! The HTTP side of the time-series sink: one write request per batch of line protocol, to
//! InfluxDB v2 `/api/v2/write?org=&bucket=&precision=ms` or InfluxDB 1.x
//! `/write?db=&rp=&precision=ms`, optionally gzip-compressed, and the one place that decides
//! what an answer means ([`classify`]): written, retry later (spool), or rejected (move aside).
//!
//! Plain `reqwest` rather than the `influxdb2` crate: `influxdb2`'s `write_line_protocol`
//! discards the response headers (so `Retry-After` could not be honoured), cannot gzip a
//! line-protocol body, and its `Client::new` panics on a bad URL. The request it sends is the
//! same: `POST /api/v2/write` with `Authorization: Token <token>`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::config::{parse_base_url, TimeseriesConfig, TimeseriesKind};
use super::Error;

/// What to do after a write request.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Written,
    /// The store is down, overloaded or refused us for a reason that fixing the store (not the
    /// data) cures: keep the batch and try again after `after` (from `Retry-After`) or backoff.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The store refused the data itself (4xx): retrying cannot help.
    Rejected {
        status: u16,
        message: String,
    },
}

/// How an HTTP status is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Written,
    Retry,
    Reject,
}

/// The single decision of what a status means. 401/403/404 are retried, not dropped: a wrong
/// token or a missing database/bucket is a configuration problem, and the data is kept until
/// it is fixed. Other 4xx (400 bad line protocol, 413 too large, 422 out of retention) reject.
pub fn classify(status: StatusCode) -> Disposition {
    match status.as_u16() {
        200..=299 => Disposition::Written,
        401 | 403 | 404 | 408 | 429 => Disposition::Retry,
        400..=499 => Disposition::Reject,
        _ => Disposition::Retry,
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

enum Auth {
    None,
    Token(HeaderValue),
    Basic {
        username: String,
        password: Option<String>,
    },
}

/// Writes line-protocol batches to one store.
pub struct HttpSink {
    client: reqwest::Client,
    write_url: Url,
    auth: Auth,
    gzip: bool,
}

/// How much of an error body is kept for the log.
const MAX_MESSAGE_CHARS: usize = 300;

impl HttpSink {
    /// Builds the sink; secrets are read from the environment here.
    pub fn new(config: &TimeseriesConfig) -> Result<Self, Error> {
        let mut base = parse_base_url(&config.url)
            .map_err(|m| Error::Config(vec![format!("timeseries.url: {m}")]))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let token = config.resolve_token().map_err(Error::Secret)?;
        let (endpoint, query): (&str, Vec<(&str, &str)>) = match config.kind {
            TimeseriesKind::InfluxDb2 => (
                "api/v2/write",
                vec![
                    ("org", config.org.as_deref().unwrap_or_default()),
                    ("bucket", config.bucket.as_deref().unwrap_or_default()),
                    ("precision", "ms"),
                ],
            ),
            TimeseriesKind::InfluxDb1 => {
                let mut q = vec![("db", config.database.as_deref().unwrap_or_default())];
                if let Some(rp) = config.retention_policy.as_deref() {
                    q.push(("rp", rp));
                }
                q.push(("precision", "ms"));
                ("write", q)
            }
            TimeseriesKind::None => {
                return Err(Error::Config(vec!["timeseries.kind: is \"none\"".into()]))
            }
        };
        let mut write_url = base
            .join(endpoint)
            .map_err(|e| Error::Config(vec![format!("timeseries.url: {e}")]))?;
        write_url.query_pairs_mut().extend_pairs(query);
        let auth = match (&config.username, token) {
            (Some(username), _) => Auth::Basic {
                username: username.clone(),
                password: config.resolve_password().map_err(Error::Secret)?,
            },
            (None, Some(token)) => {
                let mut value = HeaderValue::from_str(&format!("Token {token}")).map_err(|_| {
                    Error::Secret(
                        "the token contains characters not allowed in an HTTP header".into(),
                    )
                })?;
                value.set_sensitive(true);
                Auth::Token(value)
            }
            (None, None) => Auth::None,
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        Ok(Self {
            client,
            write_url,
            auth,
            gzip: config.gzip,
        })
    }

    /// The URL batches are posted to (no secrets in it).
    pub fn write_url(&self) -> &Url {
        &self.write_url
    }

    /// Sends one batch.
    pub async fn write(&self, body: &Bytes) -> WriteOutcome {
        let mut request = self
            .client
            .post(self.write_url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        request = match &self.auth {
            Auth::None => request,
            Auth::Token(value) => request.header(AUTHORIZATION, value.clone()),
            Auth::Basic { username, password } => request.basic_auth(username, password.as_ref()),
        };
        request = if self.gzip {
            match gzip(body) {
                Ok(compressed) => request.header(CONTENT_ENCODING, "gzip").body(compressed),
                // Compressing into memory cannot fail short of allocation failure; send plain.
                Err(_) => request.body(body.clone()),
            }
        } else {
            request.body(body.clone())
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return WriteOutcome::Retry {
                    reason: describe_request_error(&e),
                    after: None,
                }
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        match classify(status) {
            Disposition::Written => WriteOutcome::Written,
            disposition => {
                let message = match response.bytes().await {
                    Ok(body) => String::from_utf8_lossy(&body)
                        .chars()
                        .take(MAX_MESSAGE_CHARS)
                        .collect::<String>()
                        .trim()
                        .to_owned(),
                    Err(e) => format!("(body unreadable: {e})"),
                };
                if disposition == Disposition::Reject {
                    WriteOutcome::Rejected {
                        status: status.as_u16(),
                        message,
                    }
                } else {
                    WriteOutcome::Retry {
                        reason: format!("HTTP {status}: {message}"),
                        after: retry_after,
                    }
                }
            }
        }
    }
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

fn describe_request_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The URL is in the error's Display; it carries no secrets (tokens go in headers).
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_into_written_retry_and_reject() {
        let cases = [
            (200, Disposition::Written),
            (204, Disposition::Written),
            (400, Disposition::Reject),
            (413, Disposition::Reject),
            (422, Disposition::Reject),
            (401, Disposition::Retry),
            (403, Disposition::Retry),
            (404, Disposition::Retry),
            (408, Disposition::Retry),
            (429, Disposition::Retry),
            (500, Disposition::Retry),
            (502, Disposition::Retry),
            (503, Disposition::Retry),
            (504, Disposition::Retry),
        ];
        for (code, expected) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(classify(status), expected, "HTTP {code}");
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_300_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    fn config(kind: TimeseriesKind, url: &str) -> TimeseriesConfig {
        TimeseriesConfig {
            kind,
            url: url.into(),
            org: Some("district one".into()),
            bucket: Some("campus".into()),
            database: Some("campus".into()),
            ..TimeseriesConfig::default()
        }
    }

    #[test]
    fn the_v2_write_url_carries_org_bucket_and_millisecond_precision() {
        let mut c = config(TimeseriesKind::InfluxDb2, "http://127.0.0.1:8086");
        c.database = None;
        let sink = HttpSink::new(&c).unwrap();
        assert_eq!(
            sink.write_url().as_str(),
            "http://127.0.0.1:8086/api/v2/write?org=district+one&bucket=campus&precision=ms"
        );
    }

    #[test]
    fn the_v1_write_url_keeps_a_path_prefix_and_adds_the_retention_policy() {
        let mut c = config(TimeseriesKind::InfluxDb1, "https://tsdb.example/influx");
        c.retention_policy = Some("one_year".into());
        let sink = HttpSink::new(&c).unwrap();
        assert_eq!(
            sink.write_url().as_str(),
            "https://tsdb.example/influx/write?db=campus&rp=one_year&precision=ms"
        );
    }

    #[test]
    fn a_bad_url_is_an_error_not_a_panic() {
        let c = config(TimeseriesKind::InfluxDb2, "htp:/nowhere");
        assert!(matches!(HttpSink::new(&c), Err(Error::Config(_))));
    }

    #[test]
    fn gzip_output_decompresses_to_the_original_batch() {
        use std::io::Read;
        let body = b"m,point=a value=1 1\n".repeat(100);
        let packed = gzip(&body).unwrap();
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
    }
}
