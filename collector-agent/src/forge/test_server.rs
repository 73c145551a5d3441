//! A tiny HTTP/1.1 server on localhost for unit tests of the forge clients: canned answers
//! by exact path (query included), every request recorded with its headers. One
//! connection per request (`Connection: close`); unknown paths answer 404.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// Per route: the path, the answer, and how many more times it is given (None: always).
type Routes = Arc<Mutex<Vec<(String, Canned, Option<usize>)>>>;

pub struct TestServer {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub origin: String,
    /// `127.0.0.1:<port>`
    pub host: String,
    routes: Routes,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on localhost");
        let host = listener.local_addr().expect("bound").to_string();
        let routes: Routes = Arc::default();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (r, q) = (routes.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("a stream clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.trim_end().split_once(':') {
                        headers.push((n.trim().to_string(), v.trim().to_string()));
                    }
                }
                q.lock().unwrap().push(Recorded {
                    path: path.clone(),
                    headers,
                });
                let canned = r
                    .lock()
                    .unwrap()
                    .iter_mut()
                    .rev()
                    .find(|(p, _, left)| *p == path && *left != Some(0))
                    .map(|(_, c, left)| {
                        if let Some(n) = left {
                            *n -= 1;
                        }
                        c.clone()
                    })
                    .unwrap_or(Canned {
                        status: 404,
                        headers: Vec::new(),
                        body: "{\"message\": \"Not Found\"}".into(),
                    });
                let mut answer = format!("HTTP/1.1 {} Canned\r\nConnection: close\r\n", canned.status);
                for (n, v) in &canned.headers {
                    answer.push_str(&format!("{n}: {v}\r\n"));
                }
                if canned.status != 204 && canned.status != 304 {
                    answer.push_str(&format!("Content-Length: {}\r\n", canned.body.len()));
                }
                answer.push_str("\r\n");
                if canned.status != 204 && canned.status != 304 {
                    answer.push_str(&canned.body);
                }
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.flush();
            }
        });
        TestServer {
            origin: format!("http://{host}"),
            host,
            routes,
            requests,
        }
    }

    /// Answers `path` (with its query) this way from now on.
    pub fn route(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        self.push(path, status, headers, body, None);
    }

    /// Answers `path` this way the next `times` requests, then as routed before.
    pub fn route_times(&self, path: &str, times: usize, status: u16, headers: &[(&str, &str)], body: &str) {
        self.push(path, status, headers, body, Some(times));
    }

    fn push(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str, times: Option<usize>) {
        self.routes.lock().unwrap().push((
            path.to_string(),
            Canned {
                status,
                headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                body: body.to_string(),
            },
            times,
        ));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}
