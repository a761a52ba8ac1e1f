//! Synapse <= 1.156 with `experimental_features.msc3861`: the admin API, with `matrix.secret`
//! as Synapse's `admin_token`.

use serde_json::{Value, json};

use super::{Availability, Client, HomeserverConnection, HomeserverError, HsResult, ProvisionRequest};

pub struct SynapseLegacy(pub(crate) Client);

impl SynapseLegacy {
    fn user_path(&self, localpart: &str) -> String {
        format!("_synapse/admin/v2/users/{}", self.0.mxid_path(localpart))
    }

    fn expect(&self, a: super::Answer, ok: &[u16]) -> HsResult<super::Answer> {
        if ok.contains(&a.status) {
            Ok(a)
        } else if a.status == 404 {
            Err(HomeserverError::UserNotFound)
        } else {
            Err(a.unexpected())
        }
    }

    fn devices(&self, localpart: &str) -> HsResult<Vec<String>> {
        let a = self.expect(self.0.call("GET", &format!("{}/devices", self.user_path(localpart)), None)?, &[200])?;
        let v: Value = a.json()?;
        Ok(v.get("devices")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter(|d| !d.get("dehydrated").and_then(Value::as_bool).unwrap_or(false))
                    .filter_map(|d| d.get("device_id")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl HomeserverConnection for SynapseLegacy {
    fn is_localpart_available(&self, localpart: &str) -> HsResult<Availability> {
        if !localpart.is_ascii() {
            return Ok(Availability::Invalid);
        }
        let q: String = url::form_urlencoded::byte_serialize(localpart.as_bytes()).collect();
        let a = self.0.call("GET", &format!("_synapse/admin/v1/username_available?username={q}"), None)?;
        match (a.status, a.errcode().as_deref()) {
            (200, _) => {
                let v: Value = a.json()?;
                Ok(if v.get("available").and_then(Value::as_bool).unwrap_or(false) {
                    Availability::Available
                } else {
                    Availability::Taken
                })
            }
            (_, Some("M_USER_IN_USE")) => Ok(Availability::Taken),
            (_, Some("M_INVALID_USERNAME")) => Ok(Availability::Invalid),
            (_, Some("M_EXCLUSIVE")) => Ok(Availability::Exclusive),
            _ => Err(a.unexpected()),
        }
    }

    fn provision_user(&self, req: &ProvisionRequest) -> HsResult<bool> {
        let body = json!({
            "external_ids": [{ "auth_provider": "oauth-delegated", "external_id": req.user_id }],
            "displayname": req.display_name.clone().unwrap_or_default(),
            "threepids": req.emails.iter().map(|e| json!({"medium": "email", "address": e})).collect::<Vec<_>>(),
            "locked": req.locked,
        });
        let a = self.0.call("PUT", &self.user_path(&req.localpart), Some(body))?;
        match a.status {
            201 => Ok(true),
            200 => Ok(false),
            _ => Err(a.unexpected()),
        }
    }

    fn upsert_device(&self, localpart: &str, device_id: &str, display_name: Option<&str>) -> HsResult<()> {
        let a = self.0.call(
            "POST",
            &format!("{}/devices", self.user_path(localpart)),
            Some(json!({ "device_id": device_id })),
        )?;
        // Some versions answer 200 for an existing device, 201 for a new one.
        self.expect(a, &[200, 201])?;
        if let Some(name) = display_name {
            let a = self.0.call(
                "PUT",
                &format!("{}/devices/{}", self.user_path(localpart), enc(device_id)),
                Some(json!({ "display_name": name })),
            )?;
            self.expect(a, &[200])?;
        }
        Ok(())
    }

    fn sync_devices(&self, localpart: &str, devices: &[String]) -> HsResult<()> {
        let existing = self.devices(localpart)?;
        let extra: Vec<&String> = existing.iter().filter(|d| !devices.contains(d)).collect();
        if !extra.is_empty() {
            let a = self.0.call(
                "POST",
                &format!("{}/delete_devices", self.user_path(localpart)),
                Some(json!({ "devices": extra })),
            )?;
            self.expect(a, &[200])?;
        }
        for d in devices.iter().filter(|d| !existing.contains(d)) {
            self.upsert_device(localpart, d, None)?;
        }
        Ok(())
    }

    fn delete_user(&self, localpart: &str, erase: bool) -> HsResult<()> {
        let a = self.0.call(
            "POST",
            &format!("_synapse/admin/v1/deactivate/{}", self.0.mxid_path(localpart)),
            Some(json!({ "erase": erase })),
        )?;
        self.expect(a, &[200]).map(|_| ())
    }

    fn reactivate_user(&self, localpart: &str) -> HsResult<()> {
        let a = self.0.call("PUT", &self.user_path(localpart), Some(json!({ "deactivated": false })))?;
        self.expect(a, &[200, 201]).map(|_| ())
    }

    fn set_displayname(&self, localpart: &str, name: Option<&str>) -> HsResult<()> {
        let a = self.0.call(
            "PUT",
            &format!("_matrix/client/v3/profile/{}/displayname", self.0.mxid_path(localpart)),
            Some(json!({ "displayname": name.unwrap_or_default() })),
        )?;
        self.expect(a, &[200]).map(|_| ())
    }

    fn allow_cross_signing_reset(&self, localpart: &str) -> HsResult<()> {
        let a = self.0.call(
            "POST",
            &format!(
                "_synapse/admin/v1/users/{}/_allow_cross_signing_replacement_without_uia",
                self.0.mxid_path(localpart)
            ),
            Some(json!({})),
        )?;
        self.expect(a, &[200]).map(|_| ())
    }

    fn server_version(&self) -> HsResult<String> {
        self.0.server_version()
    }

    fn check_secret(&self) -> HsResult<()> {
        let a = self.0.call("GET", "_synapse/admin/v1/username_available?username=appliance-doctor-probe", None)?;
        match a.status {
            200 | 400 => Ok(()),
            _ => Err(a.unexpected()),
        }
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
