//! Synapse >= 1.136 with `matrix_authentication_service:`: the `/_synapse/mas/*` API.

use serde_json::json;

use super::{Availability, Client, HomeserverConnection, HomeserverError, HsResult, ProvisionRequest};

pub struct Synapse(pub(crate) Client);

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Synapse {
    fn post(&self, path: &str, body: serde_json::Value, ok: &[u16]) -> HsResult<u16> {
        let a = self.0.call("POST", &format!("_synapse/mas/{path}"), Some(body))?;
        if ok.contains(&a.status) {
            return Ok(a.status);
        }
        if a.status == 404 && a.errcode().as_deref() == Some("M_NOT_FOUND") {
            return Err(HomeserverError::UserNotFound);
        }
        Err(a.unexpected())
    }
}

impl HomeserverConnection for Synapse {
    fn is_localpart_available(&self, localpart: &str) -> HsResult<Availability> {
        if !localpart.is_ascii() {
            return Ok(Availability::Invalid);
        }
        let a =
            self.0.call("GET", &format!("_synapse/mas/is_localpart_available?localpart={}", enc(localpart)), None)?;
        match (a.status, a.errcode().as_deref()) {
            (200, _) => Ok(Availability::Available),
            (_, Some("M_USER_IN_USE")) => Ok(Availability::Taken),
            (_, Some("M_INVALID_USERNAME")) => Ok(Availability::Invalid),
            (_, Some("M_EXCLUSIVE")) => Ok(Availability::Exclusive),
            _ => Err(a.unexpected()),
        }
    }

    fn provision_user(&self, req: &ProvisionRequest) -> HsResult<bool> {
        let mut body = json!({ "localpart": req.localpart, "locked": req.locked });
        match &req.display_name {
            Some(n) => body["set_displayname"] = json!(n),
            None => body["unset_displayname"] = json!(true),
        }
        if req.emails.is_empty() {
            body["unset_emails"] = json!(true);
        } else {
            body["set_emails"] = json!(req.emails);
        }
        Ok(self.post("provision_user", body, &[200, 201])? == 201)
    }

    fn upsert_device(&self, localpart: &str, device_id: &str, display_name: Option<&str>) -> HsResult<()> {
        let mut body = json!({ "localpart": localpart, "device_id": device_id });
        if let Some(n) = display_name {
            body["display_name"] = json!(n);
        }
        self.post("upsert_device", body, &[200, 201]).map(|_| ())
    }

    fn sync_devices(&self, localpart: &str, devices: &[String]) -> HsResult<()> {
        self.post("sync_devices", json!({ "localpart": localpart, "devices": devices }), &[200]).map(|_| ())
    }

    fn delete_user(&self, localpart: &str, erase: bool) -> HsResult<()> {
        self.post("delete_user", json!({ "localpart": localpart, "erase": erase }), &[200]).map(|_| ())
    }

    fn reactivate_user(&self, localpart: &str) -> HsResult<()> {
        self.post("reactivate_user", json!({ "localpart": localpart }), &[200]).map(|_| ())
    }

    fn set_displayname(&self, localpart: &str, name: Option<&str>) -> HsResult<()> {
        match name {
            Some(n) => self.post("set_displayname", json!({ "localpart": localpart, "displayname": n }), &[200]),
            None => self.post("unset_displayname", json!({ "localpart": localpart }), &[200]),
        }
        .map(|_| ())
    }

    fn allow_cross_signing_reset(&self, localpart: &str) -> HsResult<()> {
        self.post("allow_cross_signing_reset", json!({ "localpart": localpart }), &[200]).map(|_| ())
    }

    fn server_version(&self) -> HsResult<String> {
        self.0.server_version()
    }

    fn check_secret(&self) -> HsResult<()> {
        // A harmless authenticated call: 200 (available) or 400 (taken/invalid) both prove the secret.
        let a = self.0.call("GET", "_synapse/mas/is_localpart_available?localpart=appliance-doctor-probe", None)?;
        match a.status {
            200 | 400 => Ok(()),
            _ => Err(a.unexpected()),
        }
    }
}
