//! An authoritative DNS server (hickory-server, UDP and TCP on one loopback port) over
//! zones that tests change while it runs.
//!
//! Storage is a map from owner name to its RRsets, so 10,000+ domains cost one hash
//! lookup per query. Answers are authoritative (AA set). A query follows CNAMEs the
//! server holds: the answer carries the chain and then the target's records. Negative
//! answers (NXDOMAIN, NODATA) carry an SOA in the authority section whose TTL and minimum
//! are the negative TTL ([`DnsServer::set_negative_ttl`], default 300). Ancestors of any
//! published name exist as empty non-terminals, so they answer NODATA, not NXDOMAIN.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TLSA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::runtime::Handle;

use crate::Error;

/// TTL given to records set without an explicit TTL, unless changed.
pub const DEFAULT_TTL: u32 = 300;

/// How the server misbehaves for a name (or one type at a name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsFault {
    /// Answer SERVFAIL (RCODE 2).
    ServFail,
    /// Answer REFUSED (RCODE 5).
    Refused,
    /// Never answer: the client times out.
    BlackHole,
    /// Answer normally, but only after this delay.
    Delay(Duration),
}

/// One query the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRecord {
    /// Query name, lowercase, without the trailing dot.
    pub name: String,
    /// Query type.
    pub rtype: RecordType,
    /// `"udp"` or `"tcp"`.
    pub protocol: String,
    /// Client address.
    pub src: SocketAddr,
}

#[derive(Default)]
struct Node {
    rrsets: HashMap<RecordType, Vec<Record>>,
    fault: Option<DnsFault>,
    type_faults: HashMap<RecordType, DnsFault>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.rrsets.is_empty() && self.fault.is_none() && self.type_faults.is_empty()
    }
}

struct Zones {
    nodes: HashMap<LowerName, Node>,
    /// Number of nodes below each name: names with a count exist (empty non-terminals).
    below: HashMap<LowerName, u32>,
    default_ttl: u32,
    negative_ttl: u32,
}

impl Zones {
    fn node_mut(&mut self, name: &LowerName) -> &mut Node {
        if !self.nodes.contains_key(name) {
            let mut parent = name.base_name();
            while !parent.is_root() {
                *self.below.entry(parent.clone()).or_insert(0) += 1;
                parent = parent.base_name();
            }
        }
        self.nodes.entry(name.clone()).or_default()
    }

    fn prune(&mut self, name: &LowerName) {
        if self.nodes.get(name).is_some_and(Node::is_empty) {
            self.nodes.remove(name);
            let mut parent = name.base_name();
            while !parent.is_root() {
                if let Some(count) = self.below.get_mut(&parent) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.below.remove(&parent);
                    }
                }
                parent = parent.base_name();
            }
        }
    }

    fn soa_for(&self, name: &LowerName) -> Record {
        let name = Name::from(name);
        let labels = name.num_labels();
        let apex = if labels > 2 {
            name.trim_to(2)
        } else {
            name.clone()
        };
        let child = |label: &str| {
            Name::from_ascii(label)
                .and_then(|l| l.append_domain(&apex))
                .unwrap_or_else(|_| apex.clone())
        };
        let soa = SOA::new(
            child("ns"),
            child("hostmaster"),
            1,
            3600,
            600,
            86400,
            self.negative_ttl,
        );
        Record::from_rdata(apex.clone(), self.negative_ttl, RData::SOA(soa))
    }

    fn resolve(&self, qname: &LowerName, qtype: RecordType) -> Outcome {
        let mut out = Outcome {
            rcode: ResponseCode::NoError,
            answers: Vec::new(),
            soa: None,
            fault: None,
        };
        let mut name = qname.clone();
        for _hop in 0..16 {
            let Some(node) = self.nodes.get(&name) else {
                out.soa = Some(self.soa_for(&name));
                if !self.below.contains_key(&name) {
                    out.rcode = ResponseCode::NXDomain;
                }
                return out;
            };
            match node.type_faults.get(&qtype).or(node.fault.as_ref()) {
                Some(DnsFault::Delay(delay)) => out.fault = Some(DnsFault::Delay(*delay)),
                Some(fault) => {
                    out.fault = Some(*fault);
                    out.answers.clear();
                    return out;
                }
                None => {}
            }
            if qtype == RecordType::ANY {
                out.answers.extend(node.rrsets.values().flatten().cloned());
            } else if let Some(rrset) = node.rrsets.get(&qtype) {
                out.answers.extend(rrset.iter().cloned());
            } else if let Some(cname) = node.rrsets.get(&RecordType::CNAME) {
                out.answers.extend(cname.iter().cloned());
                let target = cname.first().and_then(|r| match &r.data {
                    RData::CNAME(CNAME(target)) => Some(LowerName::from(target)),
                    _ => None,
                });
                if let Some(target) = target {
                    name = target;
                    continue;
                }
            }
            if out.answers.is_empty() {
                out.soa = Some(self.soa_for(&name));
            }
            return out;
        }
        // CNAME loop or overly long chain.
        out.rcode = ResponseCode::ServFail;
        out.answers.clear();
        out
    }
}

struct Outcome {
    rcode: ResponseCode,
    answers: Vec<Record>,
    soa: Option<Record>,
    fault: Option<DnsFault>,
}

#[derive(Default)]
struct QueryLog {
    counts: HashMap<(LowerName, RecordType), u64>,
    entries: Vec<QueryRecord>,
    total: u64,
    entries_off: bool,
}

struct Shared {
    zones: RwLock<Zones>,
    log: Mutex<QueryLog>,
}

impl Shared {
    fn zones(&self) -> std::sync::RwLockReadGuard<'_, Zones> {
        self.zones.read().unwrap_or_else(|p| p.into_inner())
    }
    fn zones_mut(&self) -> std::sync::RwLockWriteGuard<'_, Zones> {
        self.zones.write().unwrap_or_else(|p| p.into_inner())
    }
    fn log(&self) -> std::sync::MutexGuard<'_, QueryLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to a running authoritative DNS server. Cheap to clone; all clones share the
/// zones and the query log.
///
/// Setters take names as text (`"_mta-sts.good.test"`, trailing dot optional, any case).
/// The convenience setters panic on a name that is not a valid DNS name (a bug in the
/// test); [`DnsServer::try_set_records`] returns the error instead.
#[derive(Clone)]
pub struct DnsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Parses a name given by a test into the key used by the zones.
fn key(name: &str) -> Result<LowerName, Error> {
    let mut parsed = Name::from_ascii(name)?;
    parsed.set_fqdn(true);
    Ok(LowerName::new(&parsed))
}

fn key_or_panic(name: &str) -> LowerName {
    match key(name) {
        Ok(k) => k,
        Err(e) => panic!("testkit: invalid DNS name {name:?}: {e}"),
    }
}

fn display(name: &LowerName) -> String {
    let text = name.to_string();
    text.strip_suffix('.').unwrap_or(&text).to_string()
}

impl DnsServer {
    /// Binds UDP and TCP on `127.0.0.1` (one ephemeral port for both) and serves on the
    /// runtime behind `handle`.
    pub fn start(handle: &Handle) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            zones: RwLock::new(Zones {
                nodes: HashMap::new(),
                below: HashMap::new(),
                default_ttl: DEFAULT_TTL,
                negative_ttl: DEFAULT_TTL,
            }),
            log: Mutex::new(QueryLog::default()),
        });
        let (udp, tcp) = bind_pair()?;
        let addr = udp.local_addr()?;
        let _guard = handle.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let mut server = hickory_server::Server::new(Handler(shared.clone()));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64);
        handle.spawn(async move {
            // Runs until the runtime shuts down (the world is dropped).
            let _ = server.block_until_done().await;
        });
        Ok(DnsServer { shared, addr })
    }

    /// Address of the server (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Also serves the same zones (and counts into the same log) on `addr`, UDP and TCP:
    /// e.g. port 53 of a spare loopback address for programs that find DNS through
    /// `/etc/resolv.conf` (glibc, Postfix), which has no port syntax. Binding port 53 needs
    /// root or `CAP_NET_BIND_SERVICE`. Serves on the runtime behind `handle` (the world's:
    /// [`crate::World::handle`]).
    pub fn also_listen(&self, handle: &Handle, addr: SocketAddr) -> Result<(), Error> {
        let udp = std::net::UdpSocket::bind(addr)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let _guard = handle.enter();
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let mut server = hickory_server::Server::new(Handler(self.shared.clone()));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(10), 64);
        handle.spawn(async move {
            let _ = server.block_until_done().await;
        });
        Ok(())
    }

    /// TTL used by the setters that take none (default [`DEFAULT_TTL`]).
    pub fn set_default_ttl(&self, ttl: u32) {
        self.shared.zones_mut().default_ttl = ttl;
    }

    /// TTL and SOA minimum of negative answers (NXDOMAIN, NODATA); default 300.
    pub fn set_negative_ttl(&self, ttl: u32) {
        self.shared.zones_mut().negative_ttl = ttl;
    }

    /// Replaces the RRset of `rtype` at `name` with `data` (each with `ttl`). An empty
    /// `data` removes the RRset.
    pub fn try_set_records(
        &self,
        name: &str,
        rtype: RecordType,
        ttl: u32,
        data: Vec<RData>,
    ) -> Result<(), Error> {
        let owner = key(name)?;
        let records: Vec<Record> = data
            .into_iter()
            .map(|d| Record::from_rdata(Name::from(&owner), ttl, d))
            .collect();
        let mut zones = self.shared.zones_mut();
        if records.is_empty() {
            if let Some(node) = zones.nodes.get_mut(&owner) {
                node.rrsets.remove(&rtype);
            }
            zones.prune(&owner);
        } else {
            zones.node_mut(&owner).rrsets.insert(rtype, records);
        }
        Ok(())
    }

    /// Replaces the RRset of `rtype` at `name`. Panics on an invalid name.
    pub fn set_records(&self, name: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        if let Err(e) = self.try_set_records(name, rtype, ttl, data) {
            panic!("testkit: set_records({name:?}): {e}");
        }
    }

    /// Adds one record (with the default TTL) to the RRset of its type at `name`.
    pub fn add_record(&self, name: &str, data: RData) {
        let owner = key_or_panic(name);
        let mut zones = self.shared.zones_mut();
        let ttl = zones.default_ttl;
        let rtype = data.record_type();
        let record = Record::from_rdata(Name::from(&owner), ttl, data);
        zones
            .node_mut(&owner)
            .rrsets
            .entry(rtype)
            .or_default()
            .push(record);
    }

    fn set_default(&self, name: &str, rtype: RecordType, data: Vec<RData>) {
        let ttl = self.shared.zones().default_ttl;
        self.set_records(name, rtype, ttl, data);
    }

    /// Replaces the TXT RRset at `name`: one RR per inner slice, each holding its
    /// character-strings (`&[&["v=STSv1; ", "id=1;"]]` is one RR of two strings).
    pub fn set_txt(&self, name: &str, rrs: &[&[&str]]) {
        let data = rrs
            .iter()
            .map(|strings| RData::TXT(TXT::new(strings.iter().map(|s| s.to_string()).collect())))
            .collect();
        self.set_default(name, RecordType::TXT, data);
    }

    /// Replaces the TXT RRset at `name` with RRs whose strings are raw bytes.
    pub fn set_txt_bytes(&self, name: &str, rrs: &[&[&[u8]]]) {
        let data = rrs
            .iter()
            .map(|strings| RData::TXT(TXT::from_bytes(strings.to_vec())))
            .collect();
        self.set_default(name, RecordType::TXT, data);
    }

    /// Adds one TXT RR of `strings` at `name`.
    pub fn add_txt(&self, name: &str, strings: &[&str]) {
        self.add_record(
            name,
            RData::TXT(TXT::new(strings.iter().map(|s| s.to_string()).collect())),
        );
    }

    /// Replaces the A RRset at `name`.
    pub fn set_a(&self, name: &str, addrs: &[Ipv4Addr]) {
        let data = addrs.iter().map(|a| RData::A(A(*a))).collect();
        self.set_default(name, RecordType::A, data);
    }

    /// Replaces the AAAA RRset at `name`.
    pub fn set_aaaa(&self, name: &str, addrs: &[Ipv6Addr]) {
        let data = addrs.iter().map(|a| RData::AAAA(AAAA(*a))).collect();
        self.set_default(name, RecordType::AAAA, data);
    }

    /// Replaces the MX RRset at `name` with `(preference, exchange)` pairs.
    pub fn set_mx(&self, name: &str, mxs: &[(u16, &str)]) {
        let data = mxs
            .iter()
            .map(|(pref, host)| {
                let mut exchange = match Name::from_ascii(host) {
                    Ok(n) => n,
                    Err(e) => panic!("testkit: invalid MX host {host:?}: {e}"),
                };
                exchange.set_fqdn(true);
                RData::MX(MX::new(*pref, exchange))
            })
            .collect();
        self.set_default(name, RecordType::MX, data);
    }

    /// Makes `name` a CNAME to `target` (replacing any CNAME there).
    pub fn set_cname(&self, name: &str, target: &str) {
        let mut target_name = match Name::from_ascii(target) {
            Ok(n) => n,
            Err(e) => panic!("testkit: invalid CNAME target {target:?}: {e}"),
        };
        target_name.set_fqdn(true);
        self.set_default(
            name,
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(target_name))],
        );
    }

    /// Replaces the TLSA RRset at `name` (e.g. `_25._tcp.mail.good.test`) with
    /// `(usage, selector, matching type, association data)` tuples.
    pub fn set_tlsa(&self, name: &str, records: &[(u8, u8, u8, &[u8])]) {
        let data = records
            .iter()
            .map(|(usage, selector, matching, bytes)| {
                RData::TLSA(TLSA::new(
                    (*usage).into(),
                    (*selector).into(),
                    (*matching).into(),
                    bytes.to_vec(),
                ))
            })
            .collect();
        self.set_default(name, RecordType::TLSA, data);
    }

    /// Removes the RRset of `rtype` at `name`.
    pub fn remove(&self, name: &str, rtype: RecordType) {
        self.set_records(name, rtype, 0, Vec::new());
    }

    /// Removes everything at `name` (records and faults): it answers NXDOMAIN again
    /// (or NODATA if names below it exist).
    pub fn remove_name(&self, name: &str) {
        let owner = key_or_panic(name);
        let mut zones = self.shared.zones_mut();
        if let Some(node) = zones.nodes.get_mut(&owner) {
            *node = Node::default();
        }
        zones.prune(&owner);
    }

    /// Changes the TTL of the RRset of `rtype` at `name`.
    pub fn set_ttl(&self, name: &str, rtype: RecordType, ttl: u32) {
        let owner = key_or_panic(name);
        let mut zones = self.shared.zones_mut();
        if let Some(rrset) = zones
            .nodes
            .get_mut(&owner)
            .and_then(|n| n.rrsets.get_mut(&rtype))
        {
            for record in rrset {
                record.ttl = ttl;
            }
        }
    }

    /// Makes every query for `name` fail with `fault` (`None` clears it). The fault also
    /// applies when `name` is reached through a CNAME.
    pub fn set_fault(&self, name: &str, fault: Option<DnsFault>) {
        let owner = key_or_panic(name);
        let mut zones = self.shared.zones_mut();
        zones.node_mut(&owner).fault = fault;
        zones.prune(&owner);
    }

    /// Makes queries of one type at `name` fail with `fault` (`None` clears it); other
    /// types answer normally. Takes precedence over [`DnsServer::set_fault`].
    pub fn set_type_fault(&self, name: &str, rtype: RecordType, fault: Option<DnsFault>) {
        let owner = key_or_panic(name);
        let mut zones = self.shared.zones_mut();
        let node = zones.node_mut(&owner);
        match fault {
            Some(f) => {
                node.type_faults.insert(rtype, f);
            }
            None => {
                node.type_faults.remove(&rtype);
            }
        }
        zones.prune(&owner);
    }

    /// Number of queries received for (`name`, `rtype`), over UDP and TCP.
    pub fn query_count(&self, name: &str, rtype: RecordType) -> u64 {
        let owner = key_or_panic(name);
        self.shared
            .log()
            .counts
            .get(&(owner, rtype))
            .copied()
            .unwrap_or(0)
    }

    /// Number of queries received for `name`, any type.
    pub fn query_count_name(&self, name: &str) -> u64 {
        let owner = key_or_panic(name);
        self.shared
            .log()
            .counts
            .iter()
            .filter(|((n, _), _)| *n == owner)
            .map(|(_, c)| *c)
            .sum()
    }

    /// Number of queries received in total.
    pub fn total_queries(&self) -> u64 {
        self.shared.log().total
    }

    /// Every query received, in order (unless [`DnsServer::set_query_log`] turned the
    /// list off; counters are always kept).
    pub fn queries(&self) -> Vec<QueryRecord> {
        self.shared.log().entries.clone()
    }

    /// Keeps (default) or stops keeping the ordered list of queries (benchmarks with
    /// millions of queries turn it off; counters remain).
    pub fn set_query_log(&self, keep: bool) {
        self.shared.log().entries_off = !keep;
    }

    /// Forgets the query list and counters.
    pub fn clear_queries(&self) {
        let mut log = self.shared.log();
        log.entries.clear();
        log.counts.clear();
        log.total = 0;
    }

    /// Number of names that hold records or faults.
    pub fn name_count(&self) -> usize {
        self.shared.zones().nodes.len()
    }
}

fn bind_pair() -> Result<(std::net::UdpSocket, std::net::TcpListener), Error> {
    let mut last = None;
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = udp.local_addr()?;
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => {
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Io(last.unwrap_or_else(|| {
        std::io::Error::other("no free port for UDP and TCP")
    })))
}

struct Handler(Arc<Shared>);

impl Handler {
    fn log(&self, request: &Request) -> Option<(LowerName, RecordType)> {
        let info = request.request_info().ok()?;
        let name = info.query.name().clone();
        let rtype = info.query.query_type();
        let mut log = self.0.log();
        log.total += 1;
        *log.counts.entry((name.clone(), rtype)).or_insert(0) += 1;
        if !log.entries_off {
            let protocol = format!("{}", request.protocol()).to_ascii_lowercase();
            log.entries.push(QueryRecord {
                name: display(&name),
                rtype,
                protocol,
                src: request.src(),
            });
        }
        Some((name, rtype))
    }
}

fn not_sent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut response_edns = None;
        if let Some(req_edns) = request.edns.as_ref() {
            let mut edns = Edns::new();
            edns.set_max_payload(req_edns.max_payload().max(512));
            response_edns = Some(edns);
        }
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = response_edns.as_ref() {
            builder.edns(edns);
        }

        let query = if request.metadata.message_type == MessageType::Query
            && request.metadata.op_code == OpCode::Query
        {
            self.log(request)
        } else {
            None
        };
        let Some((qname, qtype)) = query else {
            let code = if request.metadata.op_code == OpCode::Query {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            let response = builder.error_msg(&request.metadata, code);
            return match response_handle.send_response(response).await {
                Ok(info) => info,
                Err(_) => not_sent(request),
            };
        };

        let outcome = self.0.zones().resolve(&qname, qtype);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        match outcome.fault {
            Some(DnsFault::BlackHole) => return not_sent(request),
            Some(DnsFault::ServFail) => {
                metadata.authoritative = false;
                metadata.response_code = ResponseCode::ServFail;
            }
            Some(DnsFault::Refused) => {
                metadata.authoritative = false;
                metadata.response_code = ResponseCode::Refused;
            }
            Some(DnsFault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                metadata.response_code = outcome.rcode;
            }
            None => metadata.response_code = outcome.rcode,
        }
        let response = builder.build(
            metadata,
            outcome.answers.iter(),
            std::iter::empty(),
            outcome.soa.iter(),
            std::iter::empty(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => not_sent(request),
        }
    }
}
