//! Leases: a key with an expiry, set only if absent, held by one node at a time.

use super::*;

#[async_trait::async_trait]
impl Leases for RedisStore {
    async fn take_lease(
        &self,
        atsign: &AtSign,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.key(atsign, &format!("lease:{name}")))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken.is_some())
    }

    async fn drop_lease(&self, atsign: &AtSign, name: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .clone()
            .del(self.key(atsign, &format!("lease:{name}")))
            .await?;
        Ok(())
    }
}
