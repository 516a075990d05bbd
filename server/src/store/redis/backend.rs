//! What the Redis store answers for itself: its name, readiness and size.

use super::*;

#[async_trait::async_trait]
impl Backend for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn storage_size(&self) -> Result<u64, StoreError> {
        // One Redis answers its INFO text; a cluster connection asks every master and
        // answers one text per node: the size is their sum.
        let info: redis::Value = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await?;
        let texts: Vec<String> = match info {
            redis::Value::Map(per_node) => per_node
                .into_iter()
                .filter_map(|(_, text)| redis::from_redis_value(text).ok())
                .collect(),
            single => vec![redis::from_redis_value(single).map_err(redis::RedisError::from)?],
        };
        Ok(texts.iter().map(|text| used_memory(text)).sum())
    }
}

/// `used_memory` of an `INFO memory` text (0 if absent).
fn used_memory(info: &str) -> u64 {
    info.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .find(|(name, _)| *name == "used_memory")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}
