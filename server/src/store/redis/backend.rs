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
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await?;
        let fields: HashMap<&str, &str> = info
            .lines()
            .filter_map(|line| line.trim().split_once(':'))
            .collect();
        Ok(fields
            .get("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}
