//! placeholder: being written
use crate::*;
pub struct PgStore;
impl PgStore {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
    pub async fn migrate(&self) -> StoreResult<()> {
        Ok(())
    }
}
