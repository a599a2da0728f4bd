//! A minimal HTTP/1.1 client on one keep-alive connection, for the load generator and tests.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// One keep-alive connection to a server, opened again when the server has closed it (as a
/// server does with a connection idle longer than its header timeout).
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    host: String,
}

/// A response: status, content type and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The Content-Type, if any.
    pub content_type: Option<String>,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Client {
    /// Opens a connection.
    pub async fn connect(addr: SocketAddr) -> Result<Self, String> {
        Ok(Self {
            sender: Self::open(addr).await?,
            addr,
            host: addr.to_string(),
        })
    }

    async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// `POST path` with `body` as `content_type`.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Answer, String> {
        let req = Request::post(path)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        let req = Request::get(path)
            .header(HOST, &self.host)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.send(req).await
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = Self::open(self.addr).await?;
            self.sender.ready().await.map_err(|e| e.to_string())?;
        }
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(String::from)
        };
        let content_type = header(CONTENT_TYPE);
        let retry_after = header(hyper::header::RETRY_AFTER);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            content_type,
            retry_after,
            body,
        })
    }
}
