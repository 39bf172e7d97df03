//! The channels a notification goes out on, one file per vendor, each following the vendor's
//! documented request format, signing and answers. A channel sends one [`Message`] and says how
//! it went: delivered (with the answer, for the journal), worth retrying later (connection
//! errors, timeouts, 5xx, rate limits — [`SendError::Retry`]) or not ([`SendError::Permanent`]:
//! a bad URL, a refused signature, a message the vendor will never take). An HTTP 2xx whose
//! body says `errcode`/`code` ≠ 0 is a failure; which codes mean "rate limited" is each
//! vendor's own.
//!
//! - [`wecom`]: 企业微信 group robot, `msgtype` markdown; `errcode`.
//! - [`dingtalk`]: 钉钉 custom robot, markdown, 加签 in the query; `errcode`.
//! - [`feishu`]: 飞书 custom bot, rich-text `post`, 签名 in the body; `code`.
//! - [`email`]: SMTP (lettre), UTF-8 subject and body.
//! - [`webhook`]: the alarm event as JSON, `X-Campusguard-Signature: sha256=<hex HMAC>`.

pub mod dingtalk;
pub mod email;
pub mod feishu;
pub mod webhook;
pub mod wecom;

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::{ChannelConfig, ChannelKind};
use super::message::Message;

/// Why a send did not deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum SendError {
    /// Try again later: `after` is what the answer asked for (Retry-After, a vendor's penalty).
    Retry {
        reason: String,
        rate_limited: bool,
        after: Option<Duration>,
    },
    /// Retrying will not help (bad URL, signature refused, message refused).
    Permanent(String),
}

impl SendError {
    pub fn retry(reason: impl Into<String>) -> Self {
        SendError::Retry {
            reason: reason.into(),
            rate_limited: false,
            after: None,
        }
    }

    pub fn rate_limited(reason: impl Into<String>, after: Option<Duration>) -> Self {
        SendError::Retry {
            reason: reason.into(),
            rate_limited: true,
            after,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            SendError::Retry { reason, .. } | SendError::Permanent(reason) => reason,
        }
    }
}

/// One send: the message and the idempotency keys of the deliveries it carries.
pub struct Outgoing<'a> {
    pub channel: &'a str,
    pub keys: &'a [String],
    pub message: &'a Message,
}

/// A configured channel, ready to send.
pub enum Channel {
    Wecom(wecom::Wecom),
    Dingtalk(dingtalk::Dingtalk),
    Feishu(feishu::Feishu),
    Email(email::Email),
    Webhook(webhook::Webhook),
}

impl Channel {
    /// Builds the channel of `config` (checked at load; this only fails if the environment
    /// changed since, e.g. a secret variable was unset).
    pub fn from_config(config: &ChannelConfig, timeout: Duration) -> Result<Self, String> {
        let http = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .user_agent(concat!("campusguard/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("HTTP client: {e}"))
        };
        let url = || {
            let raw = config
                .resolved_url()
                .ok_or_else(|| format!("channel `{}` has no url", config.name))?;
            reqwest::Url::parse(&raw)
                .map_err(|e| format!("channel `{}`: url is not usable: {e}", config.name))
        };
        let secret = config.resolved_secret();
        if config.secret_env.is_some() && secret.is_none() {
            return Err(format!(
                "channel `{}`: secret_env is not set in the environment",
                config.name
            ));
        }
        Ok(match config.kind {
            ChannelKind::Wecom => Channel::Wecom(wecom::Wecom::new(http()?, url()?)),
            ChannelKind::Dingtalk => {
                Channel::Dingtalk(dingtalk::Dingtalk::new(http()?, url()?, secret))
            }
            ChannelKind::Feishu => Channel::Feishu(feishu::Feishu::new(http()?, url()?, secret)),
            ChannelKind::Webhook => {
                Channel::Webhook(webhook::Webhook::new(http()?, url()?, secret))
            }
            ChannelKind::Email => Channel::Email(email::Email::from_config(config, timeout)?),
        })
    }

    /// Sends one message; `Ok` carries the answer in a few words (for the journal).
    pub async fn send(&self, out: &Outgoing<'_>) -> Result<String, SendError> {
        match self {
            Channel::Wecom(c) => c.send(out.message).await,
            Channel::Dingtalk(c) => c.send(out.message).await,
            Channel::Feishu(c) => c.send(out.message).await,
            Channel::Email(c) => c.send(out.message).await,
            Channel::Webhook(c) => c.send(out).await,
        }
    }

    /// How much text one message may carry (bytes of its lines), so a summary that names many
    /// alarms is split into messages the vendor takes whole.
    pub fn max_text_bytes(&self) -> usize {
        match self {
            // Markdown content: at most 4096 bytes (WeCom group robot documentation).
            Channel::Wecom(_) => 3800,
            // The request body at most 20 KB (DingTalk, Feishu custom bot documentation).
            Channel::Dingtalk(_) | Channel::Feishu(_) => 15_000,
            Channel::Email(_) => 200_000,
            // The webhook carries each event whole: bounded by count instead.
            Channel::Webhook(_) => usize::MAX,
        }
    }

    /// How many deliveries one summary carries at most.
    pub fn max_items(&self) -> usize {
        match self {
            Channel::Webhook(_) => 100,
            _ => 500,
        }
    }
}

/// HMAC-SHA256 of `message` keyed by `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// The part of an answer worth keeping in a message: at most 200 characters.
fn snippet(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None => body.to_string(),
    }
}

/// POSTs a JSON body and sorts out the transport and HTTP status: `Ok(body)` for a 2xx; 429
/// (with Retry-After), 408 and 5xx are retried; other statuses are permanent.
async fn post_json(request: reqwest::RequestBuilder, body: Vec<u8>) -> Result<String, SendError> {
    let response = request
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_builder() {
                SendError::Permanent(format!("request cannot be built: {}", without_url(&e)))
            } else if e.is_timeout() {
                SendError::retry("timed out")
            } else {
                SendError::retry(format!("connection failed: {}", without_url(&e)))
            }
        })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response
        .text()
        .await
        .map_err(|e| SendError::retry(format!("answer cut off: {}", without_url(&e))))?;
    if status.is_success() {
        return Ok(text);
    }
    let what = format!("HTTP {}: {}", status.as_u16(), snippet(&text));
    Err(match status.as_u16() {
        429 => SendError::rate_limited(what, retry_after),
        408 | 500..=599 => SendError::Retry {
            reason: what,
            rate_limited: false,
            after: retry_after,
        },
        _ => SendError::Permanent(what),
    })
}

/// A reqwest error's text without the URL (a robot's URL carries its access token).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "error".to_string());
    if e.len() > 200 {
        e.truncate(e.char_indices().nth(200).map_or(e.len(), |(i, _)| i));
    }
    e
}

/// The `errcode`/`code` of a robot's JSON answer: `Ok(code, message)`, or permanent when the
/// answer is not the vendor's JSON at all (a proxy's page, a wrong URL).
fn answer_code(
    body: &str,
    code_keys: &[&str],
    msg_keys: &[&str],
) -> Result<(i64, String), SendError> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| SendError::Permanent(format!("unexpected answer: {}", snippet(body))))?;
    let code = code_keys
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_i64))
        .ok_or_else(|| SendError::Permanent(format!("answer without a code: {}", snippet(body))))?;
    let msg = msg_keys
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_str))
        .unwrap_or_default()
        .to_string();
    Ok((code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn answers_without_the_vendors_code_are_permanent_failures() {
        assert!(matches!(
            answer_code("<html>proxy</html>", &["errcode"], &["errmsg"]),
            Err(SendError::Permanent(_))
        ));
        assert!(matches!(
            answer_code("{\"ok\":true}", &["errcode"], &["errmsg"]),
            Err(SendError::Permanent(_))
        ));
        assert_eq!(
            answer_code(
                "{\"errcode\":45009,\"errmsg\":\"freq\"}",
                &["errcode"],
                &["errmsg"]
            ),
            Ok((45009, "freq".to_string()))
        );
        assert_eq!(snippet(&"x".repeat(300)).chars().count(), 201);
    }
}
