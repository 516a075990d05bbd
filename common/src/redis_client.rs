//! One Redis server or a Redis Cluster behind one client and one connection type, so the
//! stores of the atServer and the directory send the same commands to either.
//!
//! [`StoreConfig::redis_client`](crate::config::StoreConfig::redis_client) builds the
//! [`RedisClient`] from `store.redis_url` or `store.redis_cluster`; what each store puts in
//! its keys is the store's. On a cluster the `redis` crate routes each command to the master
//! of its key's slot and follows `MOVED`/`ASK` and topology changes, so the stores need only
//! keep every command (script, transaction, pipeline) within one slot. What this module adds
//! is what routing by key cannot do: publishing (plain or sharded) and listing keys (a
//! `SCAN` of every master).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// The longest one request to a cluster may take, its retries and redirections included
/// (the crate's retries alone back off for minutes): through a failover, a command either
/// finds the promoted replica within it or fails (AT0002 to a client), never waits on.
pub const CLUSTER_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many replicas must hold a write before it is acknowledged, and how long to wait for
/// them (`store.redis_wait_replicas`, `store.redis_wait_timeout_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitReplicas {
    pub replicas: u32,
    pub timeout: std::time::Duration,
}

/// Where the Redis store lives; nothing is connected yet.
// Made once per store at start and cloned only for subscriptions: its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum RedisClient {
    /// One Redis server (`store.redis_url`).
    Single(redis::Client),
    /// A Redis Cluster (`store.redis_cluster`). `commands` speaks RESP2, as a single Redis is
    /// spoken to (scripts and replies read the same); `pushes` speaks RESP3, the only
    /// protocol in which the crate hands a cluster's pub/sub messages over.
    Cluster {
        commands: ClusterClient,
        pushes: ClusterClient,
    },
}

impl RedisClient {
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisClient::Cluster { .. })
    }

    /// A multiplexed connection that reconnects by itself; `single` applies to one Redis,
    /// `cluster` to each node connection of a cluster.
    pub async fn connect(
        &self,
        single: ConnectionManagerConfig,
        cluster: ClusterConfig,
    ) -> RedisResult<RedisConnection> {
        Ok(match self {
            RedisClient::Single(client) => RedisConnection::Single(
                ConnectionManager::new_with_config(client.clone(), single).await?,
            ),
            RedisClient::Cluster { commands, .. } => {
                RedisConnection::Cluster(commands.get_async_connection_with_config(cluster).await?)
            }
        })
    }
}

/// Where a store's acknowledged writes go, and what each waits for
/// (`store.redis_wait_replicas`): [`RedisClient::writes`].
#[derive(Clone)]
pub struct Writes {
    conn: RedisConnection,
    wait: Option<WaitReplicas>,
}

impl Writes {
    /// [`RedisConnection::write`] of `write` with this store's wait.
    pub async fn write(&self, write: &Pipeline) -> RedisResult<Vec<Value>> {
        self.conn.clone().write(write, self.wait).await
    }

    /// The connection writes go on (to load a script where a write will run it).
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }
}

impl RedisClient {
    /// Where acknowledged writes go: `reads` itself when they wait for no replica; with
    /// `wait`, a connection of their own (`single`, `cluster` as for
    /// [`RedisClient::connect`]), because `WAIT` blocks the connection it is sent on and a
    /// slow replica would otherwise hold up every read behind it.
    pub async fn writes(
        &self,
        reads: &RedisConnection,
        wait: Option<WaitReplicas>,
        single: ConnectionManagerConfig,
        cluster: ClusterConfig,
    ) -> RedisResult<Writes> {
        let conn = match wait {
            Some(_) => self.connect(single, cluster).await?,
            None => reads.clone(),
        };
        Ok(Writes { conn, wait })
    }
}

/// A connection to one Redis or to a cluster: clone it freely (clones share the connection).
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Publishes `message` on `channel`: `SPUBLISH` on a cluster, where a sharded channel
    /// reaches only its slot's nodes instead of every node of the cluster, plain `PUBLISH`
    /// on one Redis (no version requirement). Subscribers must subscribe the same way.
    pub async fn publish(&mut self, channel: &str, message: &[u8]) -> RedisResult<i64> {
        let verb = match self {
            RedisConnection::Single(_) => "PUBLISH",
            RedisConnection::Cluster(_) => "SPUBLISH",
        };
        redis::cmd(verb)
            .arg(channel)
            .arg(message)
            .query_async(self)
            .await
    }

    /// Runs `write`, the commands of one write (one slot's keys; a transaction if it is
    /// atomic), and hands back each command's reply (ignored or not; inside a transaction,
    /// what each command answered). With `wait`, `WAIT` follows in the same round trip on
    /// the same connection, so it counts the replicas holding this write (and what this
    /// connection wrote before): fewer than asked for within its timeout is an error, though
    /// the master keeps the write. Were `WAIT` sent apart, a reconnection in between (a
    /// failover) would put it on a fresh connection with nothing to wait for.
    ///
    /// `WAIT` blocks the connection it is sent on: [`RedisClient::writes`] gives waited writes
    /// a connection of their own.
    pub async fn write(
        &mut self,
        write: &Pipeline,
        wait: Option<WaitReplicas>,
    ) -> RedisResult<Vec<Value>> {
        let transaction = write.is_transaction();
        let commands: Vec<&Cmd> = write.cmd_iter().collect();
        if let (None, false, [one]) = (wait, transaction, commands.as_slice()) {
            // Alone, as a command: a cluster connection then also retries it when it meets
            // keys split between two masters by a slot move (`TRYAGAIN`).
            return Ok(vec![one.query_async(self).await?]);
        }
        let mut pipe = redis::pipe();
        if transaction {
            pipe.cmd("MULTI");
        }
        for cmd in commands {
            pipe.add_command(cmd.clone());
        }
        if transaction {
            pipe.cmd("EXEC");
        }
        if let Some(wait) = wait {
            let timeout_ms = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
            pipe.cmd("WAIT").arg(wait.replicas).arg(timeout_ms.max(1));
        }
        let mut replies: Vec<Value> = pipe.query_async(self).await?;
        if let Some(wait) = wait {
            let reached = match replies.pop() {
                Some(Value::Int(n)) => n,
                other => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "WAIT answered",
                        format!("{other:?}"),
                    )))
                }
            };
            if reached < i64::from(wait.replicas) {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "a write reached fewer replicas than store.redis_wait_replicas asks",
                    format!("{reached} of {} within {:?}", wait.replicas, wait.timeout),
                )));
            }
        }
        if !transaction {
            return Ok(replies);
        }
        // MULTI's OK, a QUEUED per command, then EXEC's replies.
        match replies.pop() {
            Some(Value::Array(inside)) => {
                for reply in &inside {
                    if let Value::ServerError(error) = reply {
                        return Err(error.clone().into());
                    }
                }
                Ok(inside)
            }
            other => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "EXEC answered",
                format!("{other:?}"),
            ))),
        }
    }

    /// Every key matching the glob `pattern`, unsorted and possibly repeated, read with
    /// `SCAN` (never `KEYS`, which blocks Redis while it runs): on a cluster, on every master.
    pub async fn scan_match(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        // `None`: the one Redis. A cluster's `SCAN` has no key to route by: each master's.
        let nodes: Vec<Option<(String, u16)>> = match self {
            RedisConnection::Single(_) => vec![None],
            RedisConnection::Cluster(conn) => {
                let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(conn).await?;
                masters(&nodes).into_iter().map(Some).collect()
            }
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, batch): (u64, Vec<String>) = match (&mut *self, &node) {
                    (RedisConnection::Cluster(conn), Some((host, port))) => {
                        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        redis::from_redis_value(conn.route_command(cmd, route).await?)?
                    }
                    _ => cmd.query_async(self).await?,
                };
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }
}

/// The masters serving slots, from a `CLUSTER NODES` answer: one line per node,
/// `<id> <host:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>…`.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?.split(',').collect::<Vec<_>>();
            let serving = flags.contains(&"master") && !flags.contains(&"fail") && fields.len() > 8;
            let address = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            serving.then(|| Some((host.to_string(), port.parse().ok()?)))?
        })
        .collect()
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_the_nodes_serving_slots() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,host-b master - 0 1 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 1 3 disconnected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected
e5 127.0.0.1:7004@17004 master - 0 1 0 connected
garbage
f6 [::1]:x@1 master - 0 1 0 connected 1
";
        assert_eq!(
            masters(nodes),
            [
                ("127.0.0.1".to_string(), 7000),
                ("127.0.0.1".to_string(), 7001)
            ]
        );
    }
}
