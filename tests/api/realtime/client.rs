//! Small real clients: a WebSocket client (tokio-tungstenite) and an SSE reader (reqwest),
//! each reading with a deadline so a missing event fails the test instead of hanging it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Response;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::helpers::Api;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a WebSocket read ended when it did not yield a JSON frame.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Frame(CloseCode, String),
    Eof,
}

impl WsClient {
    /// Connects as `user` (bearer header) to `/ws?{query}`; the handshake must succeed.
    pub async fn connect(app: &Api, user: &str, query: &str) -> Self {
        Self::connect_with(app, Some(app.token_for(user)), query).await
    }

    /// Connects with `token` (if any) as the bearer credential; the handshake must succeed.
    pub async fn connect_with(app: &Api, token: Option<String>, query: &str) -> Self {
        Self::try_connect(app, token, query)
            .await
            .unwrap_or_else(|(status, body)| panic!("handshake refused: {status} {body}"))
    }

    /// Connects, or returns the refusal's status and JSON body.
    pub async fn try_connect(
        app: &Api,
        token: Option<String>,
        query: &str,
    ) -> Result<Self, (u16, Value)> {
        let url = format!("{}/ws?{query}", app.address.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        if let Some(token) = token {
            let bearer = format!("Bearer {token}");
            request
                .headers_mut()
                .insert("authorization", bearer.parse().unwrap());
        }
        match connect_async(request).await {
            Ok((socket, _)) => {
                let mut client = Self { socket };
                let hello = client.next_json().await;
                assert_eq!(hello["type"], "connected", "{hello}");
                Ok(client)
            }
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response.into_body().unwrap_or_default();
                Err((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
            }
            Err(other) => panic!("cannot connect: {other}"),
        }
    }

    pub async fn send(&mut self, message: &Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send");
    }

    /// Sends `message` and returns the next frame that is not an event.
    pub async fn request(&mut self, message: &Value) -> Value {
        self.send(message).await;
        loop {
            let frame = self.next_json().await;
            if frame["type"] != "event" {
                return frame;
            }
        }
    }

    /// The next JSON text frame; panics on close or after [`WAIT`].
    pub async fn next_json(&mut self) -> Value {
        match self.next_frame(WAIT).await {
            Ok(frame) => frame,
            Err(closed) => panic!("connection ended: {closed:?}"),
        }
    }

    /// The next JSON text frame, or how the connection ended.
    pub async fn next_frame(&mut self, within: Duration) -> Result<Value, Closed> {
        loop {
            let next = tokio::time::timeout(within, self.socket.next())
                .await
                .expect("a frame within the deadline");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Close(Some(frame)))) => {
                    return Err(Closed::Frame(frame.code, frame.reason.to_string()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                None | Some(Ok(Message::Close(None))) | Some(Err(_)) => return Err(Closed::Eof),
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Reads for `period`, answering the server's pings; nothing else may arrive.
    pub async fn stay_idle(&mut self, period: std::time::Duration) {
        let reading = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("expected silence, got {other:?}"),
                }
            }
        };
        let _ = tokio::time::timeout(period, reading).await;
    }

    /// Reads until the connection ends; returns how.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Err(closed) = self.next_frame(WAIT).await {
                return closed;
            }
        }
    }

    /// The events (unwrapped) up to and including the first whose type is `last`.
    pub async fn events_until(&mut self, last: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let frame = self.next_json().await;
            assert_eq!(frame["type"], "event", "{frame}");
            assert!(frame["timestamp"].is_string());
            let event = frame["event"].clone();
            let done = event["type"] == last;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

/// One parsed SSE message.
#[derive(Debug, Clone, Default)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<Value>,
}

/// Reads an SSE response message by message (comments and `retry:` skipped).
pub struct SseReader {
    response: Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next message, or None when the stream ended.
    pub async fn next(&mut self) -> Option<SseMessage> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = SseMessage::default();
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        message.id = Some(id.to_owned());
                    } else if let Some(event) = line.strip_prefix("event: ") {
                        message.event = Some(event.to_owned());
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        message.data = Some(serde_json::from_str(data).expect("JSON data"));
                    }
                }
                if message.event.is_some() {
                    return Some(message);
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("SSE data within the deadline")
                .expect("stream reads")?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Messages up to and including the first of type `last`.
    pub async fn until(&mut self, last: &str) -> Vec<SseMessage> {
        let mut messages = Vec::new();
        loop {
            let message = self.next().await.expect("stream still open");
            let done = message.event.as_deref() == Some(last);
            messages.push(message);
            if done {
                return messages;
            }
        }
    }
}
