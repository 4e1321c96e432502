//! The client of the twin's own controllers and simulated world. Resources are
//! named by (group, plural).
//!
//! Two backends, one interface: in-process on the embedded API server (the same API
//! semantics as the HTTP front, without the network), or [`remote::Remote`] on a
//! real kube-apiserver, where writes go over HTTPS and reads come from a mirror
//! kept by watches. The controllers cannot tell which one they use.

pub mod remote;

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::api::{Api, DeleteOptions, ListOptions, PatchOptions, Subresource};
use crate::error::ApiError;
use crate::patch::PatchType;
use crate::resources::ResourceInfo;
use crate::selector::LabelSelector;
use crate::store::Change;

#[derive(Clone)]
pub struct Client {
    /// The embedded API server, or the mirror of the real one.
    pub api: Arc<Api>,
    remote: Option<Arc<remote::Remote>>,
}

impl Client {
    pub fn new(api: Arc<Api>) -> Client {
        Client { api, remote: None }
    }

    /// A client of a real API server, reading from the mirror in `remote`.
    pub fn remote(remote: Arc<remote::Remote>, api: Arc<Api>) -> Client {
        Client {
            api,
            remote: Some(remote),
        }
    }

    /// The real API server's client, when the twin runs on one.
    pub fn remote_backend(&self) -> Option<&Arc<remote::Remote>> {
        self.remote.as_ref()
    }

    pub fn info(&self, group: &str, plural: &str) -> Result<ResourceInfo, ApiError> {
        self.api
            .registry()
            .find(group, plural)
            .cloned()
            .ok_or_else(|| ApiError::not_found(group, plural, ""))
    }

    /// Every change the store makes, as it happens.
    pub fn changes(&self) -> broadcast::Receiver<Arc<Change>> {
        self.api.subscribe()
    }

    pub fn get(&self, group: &str, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let info = self.info(group, plural).ok()?;
        self.api.get(&info, ns, name).ok()
    }

    /// Objects of a kind, optionally in one namespace and matching a selector.
    pub fn list(
        &self,
        group: &str,
        plural: &str,
        ns: Option<&str>,
        selector: Option<&LabelSelector>,
    ) -> Vec<Value> {
        let Ok(info) = self.info(group, plural) else {
            return Vec::new();
        };
        let opts = ListOptions {
            label_selector: selector.cloned(),
            ..Default::default()
        };
        self.api
            .list(&info, ns, &opts)
            .ok()
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }

    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        let info = self.info_of(&obj)?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(r) = &self.remote {
            return r.create(&info, ns.as_deref(), obj);
        }
        self.api.create_as_controller(&info, ns.as_deref(), obj)
    }

    /// Merge-patches the main resource.
    pub fn patch(
        &self,
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<Value, ApiError> {
        let info = self.info(group, plural)?;
        if let Some(r) = &self.remote {
            return r.patch(&info, ns, name, &patch, false);
        }
        self.api.patch(
            &info,
            ns,
            name,
            PatchType::Merge,
            &patch,
            Subresource::Main,
            &PatchOptions::default(),
        )
    }

    /// Merge-patches the status subresource (`{"status": {...}}` is added around `status`).
    pub fn patch_status(
        &self,
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let info = self.info(group, plural)?;
        if let Some(r) = &self.remote {
            return r.patch(
                &info,
                ns,
                name,
                &json!({ "status": status }),
                info.status_subresource,
            );
        }
        let sub = if info.status_subresource {
            Subresource::Status
        } else {
            Subresource::Main
        };
        self.api.patch(
            &info,
            ns,
            name,
            PatchType::Merge,
            &json!({ "status": status }),
            sub,
            &PatchOptions::default(),
        )
    }

    /// Deletes with a grace period (None = the object's default).
    pub fn delete(
        &self,
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        let info = self.info(group, plural)?;
        if let Some(r) = &self.remote {
            return r.delete(&info, ns, name, grace);
        }
        let opts = DeleteOptions {
            grace_period_seconds: grace,
            ..Default::default()
        };
        self.api.delete(&info, ns, name, &opts)
    }

    fn info_of(&self, obj: &Value) -> Result<ResourceInfo, ApiError> {
        let api_version = obj["apiVersion"].as_str().unwrap_or("");
        let kind = obj["kind"].as_str().unwrap_or("");
        self.api
            .resolve_kind(api_version, kind)
            .ok_or_else(|| ApiError::bad_request(format!("no resource for {api_version} {kind}")))
    }
}
