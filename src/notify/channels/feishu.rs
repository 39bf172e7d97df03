//! 飞书 (Feishu) custom bot. Per its documentation ("自定义机器人使用指南",
//! https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): POST JSON to the bot's
//! webhook URL (`…/open-apis/bot/v2/hook/…`), at most 20 KB; here a rich-text message
//! `{"msg_type": "post", "content": {"post": {"zh_cn": {"title": …, "content": [[…]]}}}}`.
//! With 签名校验 the body also carries `timestamp` (Unix seconds, as a string, within an hour)
//! and `sign`: Base64 of HMAC-SHA256 keyed by `"{timestamp}\n{secret}"` over an empty message
//! (the key is the string to sign — unlike DingTalk). The answer is `{"code": 0, "msg":
//! "success"}`; a bot takes 100 messages a minute and 5 a second, and answers code 11232 when
//! limited (retried after a minute). 19021 (signature), 19022 (IP), 19024 (keyword), 9499 (bad
//! request) and other codes are permanent.

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use super::{answer_code, hmac_sha256, post_json, SendError};
use crate::notify::message::Message;

/// "frequency limited".
const RATE_LIMITED: i64 = 11232;

pub struct Feishu {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<String>,
}

/// The `sign` of `timestamp_s`: Base64 of HMAC-SHA256 keyed by `"{timestamp}\n{secret}"` over
/// nothing.
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), b""))
}

impl Feishu {
    pub fn new(client: reqwest::Client, url: reqwest::Url, secret: Option<String>) -> Self {
        Self {
            client,
            url,
            secret,
        }
    }

    /// The body of `message`, signed at `timestamp_s` when the bot has a secret.
    pub fn body(&self, message: &Message, timestamp_s: i64) -> serde_json::Value {
        let mut content: Vec<serde_json::Value> = message
            .lines
            .iter()
            .map(|line| json!([{ "tag": "text", "text": line }]))
            .collect();
        if let Some(link) = &message.link {
            let label = if message.kind == "alarm" || message.kind == "summary" {
                "查看并确认"
            } else {
                "查看详情"
            };
            content.push(json!([{ "tag": "a", "text": label, "href": link }]));
        }
        let mut body = json!({
            "msg_type": "post",
            "content": { "post": { "zh_cn": { "title": message.title, "content": content } } },
        });
        if let (Some(secret), Some(obj)) = (&self.secret, body.as_object_mut()) {
            obj.insert("timestamp".into(), json!(timestamp_s.to_string()));
            obj.insert("sign".into(), json!(sign(secret, timestamp_s)));
        }
        body
    }

    pub async fn send(&self, message: &Message) -> Result<String, SendError> {
        let now_s = crate::model::now_ms() / 1000;
        let body = serde_json::to_vec(&self.body(message, now_s))
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let answer = post_json(self.client.post(self.url.clone()), body).await?;
        judge(&answer)
    }
}

pub fn judge(answer: &str) -> Result<String, SendError> {
    // `StatusCode` is the older name of the same field, still sent next to `code`.
    match answer_code(answer, &["code", "StatusCode"], &["msg", "StatusMessage"])? {
        (0, msg) => Ok(format!("code 0 {msg}").trim_end().to_string()),
        (RATE_LIMITED, msg) => Err(SendError::rate_limited(
            format!("code {RATE_LIMITED} {msg}"),
            Some(Duration::from_secs(60)),
        )),
        (code, msg) => Err(SendError::Permanent(format!("code {code} {msg}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_keyed_by_timestamp_and_secret_over_nothing() {
        // python3 -c "import hmac,hashlib,base64;
        //   print(base64.b64encode(hmac.new(b'1700000000\nSECtest', b'', hashlib.sha256).digest()))"
        assert_eq!(
            sign("SECtest", 1_700_000_000),
            "G7XpBpG8NgG02fJOAhX6FRAObIljmFoxVReo8I62pEk="
        );
    }

    #[test]
    fn the_body_is_a_signed_rich_text_post_with_the_link_last() {
        let bot = Feishu::new(
            reqwest::Client::new(),
            reqwest::Url::parse("https://open.feishu.cn/open-apis/bot/v2/hook/x")
                .unwrap_or_else(|e| panic!("{e}")),
            Some("SECtest".into()),
        );
        let message = Message {
            kind: "alarm".into(),
            step: "第1步".into(),
            title: "【火警】xhsy".into(),
            lines: vec!["学校：xhsy".into()],
            link: Some("https://cg.example/#/alarms/1".into()),
            line: String::new(),
            events: Vec::new(),
            subject: None,
        };
        let body = bot.body(&message, 1_700_000_000);
        assert_eq!(body["timestamp"], "1700000000");
        assert_eq!(body["sign"], "G7XpBpG8NgG02fJOAhX6FRAObIljmFoxVReo8I62pEk=");
        assert_eq!(body["msg_type"], "post");
        let post = &body["content"]["post"]["zh_cn"];
        assert_eq!(post["title"], "【火警】xhsy");
        assert_eq!(post["content"][0][0]["text"], "学校：xhsy");
        assert_eq!(
            post["content"][1][0]["href"],
            "https://cg.example/#/alarms/1"
        );
    }

    #[test]
    fn code_zero_delivers_and_11232_is_retried() {
        assert!(judge(r#"{"code":0,"msg":"success","data":{}}"#).is_ok());
        assert!(judge(r#"{"StatusCode":0,"StatusMessage":"success"}"#).is_ok());
        assert!(matches!(
            judge(r#"{"code":11232,"msg":"frequency limited"}"#),
            Err(SendError::Retry {
                rate_limited: true,
                ..
            })
        ));
        assert!(matches!(
            judge(
                r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#
            ),
            Err(SendError::Permanent(_))
        ));
    }
}
