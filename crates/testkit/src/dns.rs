//! A DNS server of the test's own on loopback: it answers TXT queries for
//! the records the test publishes (and NXDOMAIN for any other name), so
//! `letterpress dns --check` and `doctor` can be driven through a real
//! resolver over a real socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Published TXT records: lower-case name (no final dot) -> values.
type Zone = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// A running server; it stops when dropped.
pub struct DnsServer {
    /// Where it answers (UDP).
    pub addr: SocketAddr,
    zone: Zone,
    task: tokio::task::JoinHandle<()>,
}

impl DnsServer {
    /// Starts answering on a free loopback port.
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind a UDP port");
        let addr = socket.local_addr().expect("its address");
        let zone: Zone = Arc::default();
        let task = tokio::spawn(answer(socket, Arc::clone(&zone)));
        DnsServer { addr, zone, task }
    }

    /// Publishes a TXT record `value` at `name` (cut into the 255-byte
    /// strings a TXT record holds); several values may share a name.
    pub fn publish_txt(&self, name: &str, value: &str) {
        self.zone
            .lock()
            .unwrap()
            .entry(name.trim_end_matches('.').to_ascii_lowercase())
            .or_default()
            .push(value.to_string());
    }

    /// `IP:PORT`, as `--resolver` takes it.
    pub fn resolver(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn strings(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    out.push(current);
    out
}

async fn answer(socket: UdpSocket, zone: Zone) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut response = Message::new(
            query.metadata.id,
            MessageType::Response,
            query.metadata.op_code,
        );
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.edns = query.edns.clone();
        let mut any_name = false;
        for q in &query.queries {
            response.add_query(q.clone());
            let name = q
                .name()
                .to_ascii()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let zone = zone.lock().unwrap();
            let Some(values) = zone.get(&name) else {
                continue;
            };
            any_name = true;
            if q.query_type() == RecordType::TXT {
                for value in values {
                    let owner =
                        Name::from_ascii(format!("{name}.")).expect("a name we were asked for");
                    response.add_answer(Record::from_rdata(
                        owner,
                        60,
                        RData::TXT(TXT::new(strings(value))),
                    ));
                }
            }
        }
        if !any_name {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}
