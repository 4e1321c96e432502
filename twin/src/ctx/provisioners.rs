//! The registry of storage backends behind CSI provisioners: who can serve a claim
//! of a StorageClass whose `provisioner` is a given name.
//!
//! Contract: a plain registry shared through `Ctx.provisioners`; operators register
//! their backend (Rook's ceph-csi drivers ask the Ceph cluster), the simulated
//! provisioners (`crate::world::volumes`) ask it before creating a volume. A
//! provisioner without a backend is a generic CSI driver that always succeeds.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

/// A storage backend behind a provisioner: tells whether it can serve a claim now.
pub trait ProvisionBackend: Send + Sync {
    /// `Err(message)` keeps the claim Pending; the message goes into the
    /// `ProvisioningFailed` event.
    fn can_provision(&self, class: &Value, pvc: &Value) -> Result<(), String>;
}

impl<F> ProvisionBackend for F
where
    F: Fn(&Value, &Value) -> Result<(), String> + Send + Sync,
{
    fn can_provision(&self, class: &Value, pvc: &Value) -> Result<(), String> {
        self(class, pvc)
    }
}

/// Backends by provisioner name (a StorageClass's `provisioner`).
#[derive(Default)]
pub struct Provisioners {
    backends: RwLock<HashMap<String, Arc<dyn ProvisionBackend>>>,
}

impl Provisioners {
    /// Registers (or replaces) the backend of a provisioner.
    pub fn register(&self, provisioner: impl Into<String>, backend: Arc<dyn ProvisionBackend>) {
        self.backends
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(provisioner.into(), backend);
    }

    pub fn unregister(&self, provisioner: &str) {
        self.backends
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(provisioner);
    }

    pub fn get(&self, provisioner: &str) -> Option<Arc<dyn ProvisionBackend>> {
        self.backends
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(provisioner)
            .cloned()
    }

    /// Asks the provisioner's backend; provisioners without one always can.
    pub fn can_provision(
        &self,
        provisioner: &str,
        class: &Value,
        pvc: &Value,
    ) -> Result<(), String> {
        match self.get(provisioner) {
            Some(b) => b.can_provision(class, pvc),
            None => Ok(()),
        }
    }
}
