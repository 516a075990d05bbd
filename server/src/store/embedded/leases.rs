//! Leases, held in memory: one process serves an embedded store.

use super::*;

#[async_trait::async_trait]
impl crate::store::Leases for Embedded {
    async fn take_lease(
        &self,
        atsign: &AtSign,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.leases.take(atsign, name, ttl))
    }

    async fn drop_lease(&self, atsign: &AtSign, name: &str) -> Result<(), StoreError> {
        self.leases.drop(atsign, name);
        Ok(())
    }
}
