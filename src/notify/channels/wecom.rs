//! 企业微信 (WeCom) group robot. Per its documentation ("群机器人配置说明",
//! https://developer.work.weixin.qq.com/document/path/91770): POST JSON to the robot's webhook
//! URL (its `key` is the credential; there is no signing), `{"msgtype": "markdown",
//! "markdown": {"content": …}}` with the content at most 4096 bytes of UTF-8; the answer is
//! `{"errcode": 0, "errmsg": "ok"}`. Each robot takes at most 20 messages a minute; beyond that
//! it answers errcode 45009 (api freq out of limit), which is retried after a minute. errcode -1
//! (system busy) is retried; any other non-zero errcode is permanent.

use std::time::Duration;

use serde_json::json;

use super::{answer_code, post_json, SendError};
use crate::notify::message::{truncate_bytes, Message};

/// Bytes of markdown content a WeCom robot takes.
const MAX_CONTENT: usize = 4096;
/// "api freq out of limit".
const RATE_LIMITED: i64 = 45009;
/// "system busy".
const BUSY: i64 = -1;

pub struct Wecom {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl Wecom {
    pub fn new(client: reqwest::Client, url: reqwest::Url) -> Self {
        Self { client, url }
    }

    /// The request body of `message`.
    pub fn body(message: &Message) -> serde_json::Value {
        json!({
            "msgtype": "markdown",
            "markdown": { "content": truncate_bytes(&message.wecom_markdown(), MAX_CONTENT) },
        })
    }

    pub async fn send(&self, message: &Message) -> Result<String, SendError> {
        let body = serde_json::to_vec(&Self::body(message))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let answer = post_json(self.client.post(self.url.clone()), body).await?;
        judge(&answer)
    }
}

/// What a 2xx answer says.
pub fn judge(answer: &str) -> Result<String, SendError> {
    match answer_code(answer, &["errcode"], &["errmsg"])? {
        (0, msg) => Ok(format!("errcode 0 {msg}").trim_end().to_string()),
        (RATE_LIMITED, msg) => Err(SendError::rate_limited(
            format!("errcode {RATE_LIMITED} {msg}"),
            Some(Duration::from_secs(60)),
        )),
        (BUSY, msg) => Err(SendError::retry(format!("errcode -1 {msg}"))),
        (code, msg) => Err(SendError::Permanent(format!("errcode {code} {msg}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_decides_delivered_rate_limited_or_refused() {
        assert_eq!(
            judge(r#"{"errcode":0,"errmsg":"ok"}"#),
            Ok("errcode 0 ok".into())
        );
        assert!(matches!(
            judge(r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            Err(SendError::Retry {
                rate_limited: true,
                ..
            })
        ));
        assert!(matches!(
            judge(r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#),
            Err(SendError::Permanent(_))
        ));
    }

    #[test]
    fn the_body_is_markdown_within_the_documented_size() {
        let message = Message {
            kind: "alarm".into(),
            step: "第1步".into(),
            title: "【火警】xhsy".into(),
            lines: vec!["火".repeat(3000)],
            link: None,
            line: String::new(),
            events: Vec::new(),
            subject: None,
        };
        let body = Wecom::body(&message);
        assert_eq!(body["msgtype"], "markdown");
        let content = body["markdown"]["content"].as_str().unwrap_or_default();
        assert!(content.starts_with("**【火警】xhsy**\n"));
        assert!(content.len() <= MAX_CONTENT);
    }
}
