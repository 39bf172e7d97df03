//! 钉钉 (DingTalk) custom robot. Per its documentation ("自定义机器人接入" and "自定义机器人安全
//! 设置", https://open.dingtalk.com/document/robots/custom-robot-access): POST JSON to the
//! robot's webhook URL (`…/robot/send?access_token=…`), `{"msgtype": "markdown", "markdown":
//! {"title": …, "text": …}}`. With 加签 the URL also carries `timestamp` (Unix ms, within an
//! hour of DingTalk's clock) and `sign`: HMAC-SHA256 keyed by the secret over
//! `"{timestamp}\n{secret}"`, Base64, then URL-encoded. The answer is `{"errcode": 0,
//! "errmsg": "ok"}`; a robot takes at most 20 messages a minute and answers errcode 130101
//! ("send too fast") beyond that, blocking for 10 minutes — retried after them. 310000 (sign,
//! keyword or IP not accepted) and other codes are permanent; -1 (busy) is retried.

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use super::{answer_code, hmac_sha256, post_json, SendError};
use crate::notify::message::{truncate_bytes, Message};

/// "send too fast, exceed 20 times per minute".
const RATE_LIMITED: i64 = 130_101;
/// How long DingTalk blocks a robot that went over its limit.
const PENALTY: Duration = Duration::from_secs(600);
/// Bytes of markdown text kept (the whole body must stay under 20,000 bytes).
const MAX_TEXT: usize = 18_000;

pub struct Dingtalk {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<String>,
}

/// The 加签 `sign` of `timestamp_ms`, before URL encoding: Base64 of HMAC-SHA256 keyed by the
/// secret over `"{timestamp}\n{secret}"`.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()))
}

impl Dingtalk {
    pub fn new(client: reqwest::Client, url: reqwest::Url, secret: Option<String>) -> Self {
        Self {
            client,
            url,
            secret,
        }
    }

    pub fn body(message: &Message) -> serde_json::Value {
        json!({
            "msgtype": "markdown",
            "markdown": {
                "title": message.title,
                "text": truncate_bytes(&message.dingtalk_markdown(), MAX_TEXT),
            },
        })
    }

    /// The URL with `timestamp` and `sign` appended (URL-encoded by the query serializer).
    pub fn signed_url(&self, timestamp_ms: i64) -> reqwest::Url {
        let mut url = self.url.clone();
        if let Some(secret) = &self.secret {
            url.query_pairs_mut()
                .append_pair("timestamp", &timestamp_ms.to_string())
                .append_pair("sign", &sign(secret, timestamp_ms));
        }
        url
    }

    pub async fn send(&self, message: &Message) -> Result<String, SendError> {
        let body = serde_json::to_vec(&Self::body(message))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let url = self.signed_url(crate::model::now_ms());
        let answer = post_json(self.client.post(url), body).await?;
        judge(&answer)
    }
}

pub fn judge(answer: &str) -> Result<String, SendError> {
    match answer_code(answer, &["errcode"], &["errmsg"])? {
        (0, msg) => Ok(format!("errcode 0 {msg}").trim_end().to_string()),
        (RATE_LIMITED, msg) => Err(SendError::rate_limited(
            format!("errcode {RATE_LIMITED} {msg}"),
            Some(PENALTY),
        )),
        (-1, msg) => Err(SendError::retry(format!("errcode -1 {msg}"))),
        (code, msg) => Err(SendError::Permanent(format!("errcode {code} {msg}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_documented_hmac_and_is_url_encoded_in_the_query() {
        // Computed independently: python3 -c "import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b'SECtest', b'1700000000000\nSECtest',
        //   hashlib.sha256).digest()))"
        assert_eq!(
            sign("SECtest", 1_700_000_000_000),
            "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g="
        );
        let robot = Dingtalk::new(
            reqwest::Client::new(),
            reqwest::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=t")
                .unwrap_or_else(|e| panic!("{e}")),
            Some("SECtest".into()),
        );
        let url = robot.signed_url(1_700_000_000_000);
        assert_eq!(
            url.query(),
            Some("access_token=t&timestamp=1700000000000&sign=aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D")
        );
    }

    #[test]
    fn send_too_fast_waits_out_the_penalty_and_a_refused_signature_is_permanent() {
        assert_eq!(
            judge(r#"{"errcode":0,"errmsg":"ok"}"#),
            Ok("errcode 0 ok".into())
        );
        assert_eq!(
            judge(r#"{"errcode":130101,"errmsg":"send too fast"}"#),
            Err(SendError::rate_limited(
                "errcode 130101 send too fast",
                Some(PENALTY)
            ))
        );
        assert!(matches!(
            judge(r#"{"errcode":310000,"errmsg":"sign not match"}"#),
            Err(SendError::Permanent(_))
        ));
    }
}
