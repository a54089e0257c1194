//! Request body sizes and the number of live streams per client.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, Limited};
use serde_json::json;

/// Every request body but uploads: forms and JSON are a few kilobytes.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;

/// Routes that take bodies up to the upload limit: an exact path, or every
/// path under an entry that ends in '/'. The limit is applied before
/// routing, so a route opts in by being listed here; every other route
/// (server functions included) stays at 1 MiB. `/api/datasets` is the
/// dataset upload (its handler also enforces its own, smaller limit).
pub const UPLOAD_ROUTES: &[&str] = &["/api/datasets", "/api/uploads/", "/fn/uploads/"];

#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub default: u64,
    pub upload: u64,
}

impl BodyLimits {
    pub fn for_path(&self, path: &str) -> u64 {
        let upload = UPLOAD_ROUTES.iter().any(|route| {
            if route.ends_with('/') {
                path.starts_with(route)
            } else {
                path == *route
            }
        });
        if upload {
            self.upload
        } else {
            self.default
        }
    }
}

/// Whether a body read failed because it passed the route's limit (a body
/// sent without a length, cut while read): upload handlers answer 413 and
/// delete what they wrote.
pub fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// How much of a refused body is still read, and thrown away, before the
/// 413 goes out. A server that answers while the client is still sending
/// and then closes the connection resets it, and the client never reads the
/// answer: it sees a broken pipe, not "too large". Past this much (or this
/// long), the connection is closed anyway.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// A request body that the handler reads (cut at the route's limit) while
/// the access layer keeps a hold on it, to read the rest of a refused one.
pub struct RefusableBody(Arc<tokio::sync::Mutex<Option<Body>>>);

impl RefusableBody {
    pub fn new(body: Body) -> Self {
        Self(Arc::new(tokio::sync::Mutex::new(Some(body))))
    }

    /// The body for the handler: an error once it passes `limit` bytes.
    pub fn limited(&self, limit: u64) -> Body {
        let frames = futures_util::stream::unfold(self.0.clone(), |slot| async move {
            loop {
                let next = match slot.lock().await.as_mut() {
                    Some(body) => body.frame().await,
                    None => None,
                };
                match next? {
                    // Trailers carry nothing an upload needs.
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => return Some((Ok(data), slot)),
                        Err(_) => continue,
                    },
                    Err(error) => return Some((Err(error), slot)),
                }
            }
        });
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Body::new(Limited::new(Body::from_stream(frames), limit))
    }

    /// Reads and drops what the client still sends of a refused body (up
    /// to `DRAIN_BYTES` or `DRAIN_TIME`), so that it reads the answer.
    pub async fn drain(&self) {
        let Some(mut body) = self.0.lock().await.take() else {
            return;
        };
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            let mut read = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |data| data.len() as u64);
                if read > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    }
}

/// How long a peer may leave sent data unacknowledged (a laptop that went
/// to sleep, a dead link) before the kernel drops the connection, and with
/// it the stream's slot; TCP keep-alive probes find idle dead peers too.
pub const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sets TCP_USER_TIMEOUT and keep-alive on the listening socket: Linux
/// copies both to every accepted connection.
pub fn cut_stalled_clients(listener: &tokio::net::TcpListener) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(listener);
    socket.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(STALLED_CLIENT_TIMEOUT)
            .with_interval(Duration::from_secs(10)),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(STALLED_CLIENT_TIMEOUT))?;
    Ok(())
}

/// Counts the open SSE streams of each client address. A browser keeps at
/// most six connections per server anyway; a client holding more is a
/// script, and the cap keeps one of them from taking every socket.
pub struct StreamSlots {
    per_client: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open stream; dropping it (the stream ended or the client left)
/// frees the slot.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    client: IpAddr,
}

impl StreamSlots {
    pub fn new(per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn acquire(self: &Arc<Self>, client: IpAddr) -> Result<StreamSlot, TooManyStreams> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(client).or_default();
        if *count >= self.per_client {
            return Err(TooManyStreams {
                limit: self.per_client,
            });
        }
        *count += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            client,
        })
    }

    pub fn open_for(&self, client: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&client).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too many live streams from this address (at most {limit}); close a tab or wait")]
pub struct TooManyStreams {
    pub limit: usize,
}

impl IntoResponse for TooManyStreams {
    fn into_response(self) -> Response {
        (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_client_and_freed_on_drop() {
        let slots = StreamSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.acquire(a).unwrap();
        let _second = slots.acquire(a).unwrap();
        assert_eq!(slots.acquire(a).err().map(|e| e.limit), Some(2));
        let _other = slots.acquire(b).unwrap();
        assert_eq!(slots.open_for(a), 2);
        drop(first);
        assert_eq!(slots.open_for(a), 1);
        assert!(slots.acquire(a).is_ok());
    }

    #[tokio::test]
    async fn accepted_connections_inherit_the_stall_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        cut_stalled_clients(&listener).unwrap();
        let address = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let socket = socket2::SockRef::from(&accepted);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(STALLED_CLIENT_TIMEOUT)
        );
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), STALLED_CLIENT_TIMEOUT);
    }

    #[test]
    fn uploads_opt_in_by_path() {
        let limits = BodyLimits {
            default: 10,
            upload: 1000,
        };
        assert_eq!(limits.for_path("/api/runs"), 10);
        assert_eq!(limits.for_path("/fn/runs/create"), 10);
        assert_eq!(limits.for_path("/api/uploads/datasets"), 1000);
        assert_eq!(limits.for_path("/api/uploadsX"), 10);
        assert_eq!(limits.for_path("/api/datasets"), 1000);
        assert_eq!(limits.for_path("/api/datasets/3"), 10);
    }
}
