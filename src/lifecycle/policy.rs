//! Which scopes a grant may carry: MAS's default policy written as plain rules, with its messages.

use crate::config::PolicyData;
use crate::model::User;
use crate::model::scope::{
    self, EMAIL, MAS_ADMIN, MATRIX_API, MATRIX_API_UNSTABLE, MATRIX_DEVICE_PREFIX, MATRIX_DEVICE_PREFIX_UNSTABLE,
    OPENID, SYNAPSE_ADMIN, Scope,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// Authorization code and device code: a person approves.
    Interactive,
    ClientCredentials,
}

/// Checks the shape of a scope (independent of who asks); the message names the problem.
pub fn check_shape(scope: &Scope) -> Result<(), String> {
    let mut stable_devices = 0;
    let mut unstable_devices = 0;
    let mut stable = false;
    let mut unstable = false;
    for token in scope.iter() {
        if token == MATRIX_API {
            stable = true;
        } else if token == MATRIX_API_UNSTABLE {
            unstable = true;
        } else if let Some(id) = token.strip_prefix(MATRIX_DEVICE_PREFIX) {
            stable = true;
            stable_devices += 1;
            check_device(id)?;
        } else if let Some(id) = token.strip_prefix(MATRIX_DEVICE_PREFIX_UNSTABLE) {
            unstable = true;
            unstable_devices += 1;
            check_device(id)?;
        } else if !matches!(token, OPENID | EMAIL | SYNAPSE_ADMIN | MAS_ADMIN) && !token.starts_with("urn:mas:graphql:")
        {
            return Err(format!("scope '{token}' not allowed"));
        }
    }
    if stable && unstable {
        return Err("request cannot mix unstable and stable scopes".into());
    }
    if stable_devices > 1 || unstable_devices > 1 {
        return Err("request has more than one device scope".into());
    }
    if stable_devices + unstable_devices > 0 && !scope.has_matrix_api() {
        return Err("a device scope requires the Matrix API scope".into());
    }
    Ok(())
}

fn check_device(id: &str) -> Result<(), String> {
    if scope::is_valid_device_id(id) {
        Ok(())
    } else {
        Err(format!("device ID '{id}' is invalid: {}", crate::model::device::DEVICE_ID_RULE))
    }
}

/// Checks that this grant, asked for by `client_id` for this user, may carry the scope, with the
/// configured `policy.data`: `admin_users` may request administration as if `can_request_admin`
/// were set, and `admin_clients` get `urn:mas:admin` with the client_credentials grant.
pub fn check(
    scope: &Scope,
    kind: GrantKind,
    user: Option<&User>,
    client_id: &str,
    data: &PolicyData,
) -> Result<(), String> {
    check_shape(scope)?;
    let matrix = scope.iter().any(|t| t == MATRIX_API || t == MATRIX_API_UNSTABLE || scope::device_id_of(t).is_some());
    if kind == GrantKind::ClientCredentials {
        if matrix || scope.contains(SYNAPSE_ADMIN) {
            return Err("Matrix scopes need a user: use an interactive grant".into());
        }
        if scope.contains(MAS_ADMIN) && !data.is_admin_client(client_id) {
            return Err("scope 'urn:mas:admin' not allowed for this client".into());
        }
        return Ok(());
    }
    let admin = user.is_some_and(|u| may_request_admin(u, data));
    if (scope.contains(SYNAPSE_ADMIN) || scope.contains(MAS_ADMIN)) && !admin {
        let which = if scope.contains(SYNAPSE_ADMIN) { SYNAPSE_ADMIN } else { MAS_ADMIN };
        return Err(format!("scope '{which}' not allowed: the user may not request administration"));
    }
    Ok(())
}

/// Whether the user may hold administration scopes: its `can_request_admin` flag, or its
/// username in `policy.data.admin_users`.
pub fn may_request_admin(user: &User, data: &PolicyData) -> bool {
    user.can_request_admin || data.is_admin_user(&user.username)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Scope {
        Scope::parse(v).unwrap()
    }

    #[test]
    fn rules() {
        let api = "urn:matrix:client:api:*";
        assert!(check_shape(&s(&format!("openid {api} urn:matrix:client:device:ABCDEFGHIJ"))).is_ok());
        assert!(check_shape(&s("urn:matrix:client:device:ABCDEFGHIJ")).is_err(), "device needs api");
        assert!(check_shape(&s(&format!("{api} urn:matrix:client:device:SHORT"))).is_err());
        assert!(
            check_shape(&s(&format!("{api} urn:matrix:client:device:AAAAAAAAAA urn:matrix:client:device:BBBBBBBBBB")))
                .is_err()
        );
        assert!(
            check_shape(&s(&format!("{api} urn:matrix:org.matrix.msc2967.client:device:AAAAAAAAAA"))).is_err(),
            "mixed"
        );
        assert!(check_shape(&s("profile")).is_err());
        assert!(check(&s("urn:synapse:admin:*"), GrantKind::Interactive, None, "", &PolicyData::default()).is_err());
        assert!(check(&s(api), GrantKind::ClientCredentials, None, "", &PolicyData::default()).is_err());
        assert!(check(&s("openid"), GrantKind::ClientCredentials, None, "", &PolicyData::default()).is_ok());
    }

    #[test]
    fn policy_data_grants_administration() {
        let data = PolicyData {
            admin_clients: vec!["01J0000000000000000000ADM1".into()],
            admin_users: vec!["alice".into()],
            ..Default::default()
        };
        let cc = GrantKind::ClientCredentials;
        assert!(check(&s(MAS_ADMIN), cc, None, "01J0000000000000000000ADM1", &data).is_ok());
        assert!(check(&s(MAS_ADMIN), cc, None, "01j0000000000000000000adm1", &data).is_ok());
        assert!(check(&s(MAS_ADMIN), cc, None, "01J0000000000000000000CF01", &data).is_err());
        assert!(
            check(&s(MAS_ADMIN), cc, None, "", &PolicyData::default()).is_err(),
            "no admin clients without policy data"
        );
        assert!(check(&s(SYNAPSE_ADMIN), cc, None, "01J0000000000000000000ADM1", &data).is_err());

        let user = |name: &str, flag: bool| User {
            id: "01J0000000000000000000USER".into(),
            username: name.into(),
            display_name: None,
            created_at: 0,
            locked_at: None,
            deactivated_at: None,
            can_request_admin: flag,
        };
        let (alice, bob, carol) = (user("alice", false), user("bob", false), user("carol", true));
        let i = GrantKind::Interactive;
        for scope in [MAS_ADMIN, SYNAPSE_ADMIN] {
            assert!(check(&s(scope), i, Some(&alice), "", &data).is_ok(), "{scope} for an admin_users entry");
            assert!(check(&s(scope), i, Some(&bob), "", &data).is_err(), "{scope} for bob");
            assert!(check(&s(scope), i, Some(&carol), "", &data).is_ok(), "{scope} for can_request_admin");
            assert!(
                check(&s(scope), i, Some(&alice), "", &PolicyData::default()).is_err(),
                "{scope} without policy data"
            );
        }
    }
}
