//! What the embedded store answers for itself: its name, a writer that failed, its size.

use super::*;

#[async_trait::async_trait]
impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self.failure() {
            Some(why) => Err(StoreError::Failed(why)),
            None => Ok(()),
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    async fn storage_size(&self) -> Result<u64, StoreError> {
        self.scan(|shared, _| Ok(shared.db.disk_space()?)).await
    }
}
