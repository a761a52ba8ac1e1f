//! The admin API's routes and their OpenAPI 3.1 description come from one list: each submodule
//! adds its operations through `Routes::route`, which both routes the handler and records the
//! operation. `document` turns the records into the document served at `/api/spec.json` (MAS's
//! path), so a route cannot be added without being documented, nor documented without being
//! routed.

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use serde_json::{Map, Value, json};

use super::PREFIX;
use crate::http::AppState;

/// A `filter[…]` query parameter of a list.
#[derive(Debug, Clone, Copy)]
pub enum Filter {
    /// `true` / `false`.
    Bool(&'static str, &'static str),
    /// The ULID of another resource.
    Id(&'static str, &'static str),
    /// Free text.
    Text(&'static str, &'static str),
    /// One of the given values.
    OneOf(&'static str, &'static [&'static str], &'static str),
}

/// The request body of an operation: a component schema name.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    None,
    Required(&'static str),
    /// May be empty (no body at all).
    Optional(&'static str),
}

/// What a successful call answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// 200 with `{data: <resource>, links}`.
    One(&'static str),
    /// 201 with `{data: <resource>, links}`.
    Created(&'static str),
    /// 200 with a paginated list of the resource.
    List(&'static str),
    /// 200 with the component schema as the whole body.
    Plain(&'static str),
    /// 204 without a body.
    NoContent,
}

/// One documented operation; `path` is relative to `/api/admin/v1`, in axum's `{param}` syntax,
/// which is also OpenAPI's.
#[derive(Debug, Clone)]
pub struct Op {
    pub method: Method,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub filters: &'static [Filter],
    pub body: Body,
    pub answer: Answer,
}

impl Op {
    fn new(method: Method, path: &'static str, id: &'static str, summary: &'static str, answer: Answer) -> Self {
        Self { method, path, id, summary, filters: &[], body: Body::None, answer }
    }
    pub fn get(path: &'static str, id: &'static str, summary: &'static str, answer: Answer) -> Self {
        Self::new(Method::GET, path, id, summary, answer)
    }
    pub fn post(path: &'static str, id: &'static str, summary: &'static str, answer: Answer) -> Self {
        Self::new(Method::POST, path, id, summary, answer)
    }
    pub fn put(path: &'static str, id: &'static str, summary: &'static str, answer: Answer) -> Self {
        Self::new(Method::PUT, path, id, summary, answer)
    }
    pub fn delete(path: &'static str, id: &'static str, summary: &'static str) -> Self {
        Self::new(Method::DELETE, path, id, summary, Answer::NoContent)
    }
    pub fn filters(mut self, filters: &'static [Filter]) -> Self {
        self.filters = filters;
        self
    }
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// A router that records what it routes.
pub struct Routes {
    tag: &'static str,
    router: Router<AppState>,
    ops: Vec<(&'static str, Op)>,
}

impl Routes {
    /// Operations added next are grouped under `tag`.
    pub fn new(tag: &'static str) -> Self {
        Self { tag, router: Router::new(), ops: Vec::new() }
    }

    pub fn route<H, T>(mut self, op: Op, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(op.method.clone()).expect("admin API methods are GET, POST, PUT, DELETE");
        self.router = self.router.route(op.path, on(filter, handler));
        self.ops.push((self.tag, op));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    pub fn into_parts(self) -> (Router<AppState>, Vec<(&'static str, Op)>) {
        (self.router, self.ops)
    }
}

/// `{name}` segments of a path.
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn operation(tag: &str, op: &Op) -> Value {
    let mut params: Vec<Value> = path_params(op.path)
        .map(|name| {
            let schema = if name == "id" { schema_ref("ULID") } else { json!({"type": "string"}) };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    for f in op.filters {
        let (name, schema, description) = match *f {
            Filter::Bool(n, d) => (n, json!({"type": "boolean"}), d),
            Filter::Id(n, d) => (n, schema_ref("ULID"), d),
            Filter::Text(n, d) => (n, json!({"type": "string", "minLength": 1}), d),
            Filter::OneOf(n, values, d) => (n, json!({"type": "string", "enum": values}), d),
        };
        params.push(json!({
            "name": format!("filter[{name}]"), "in": "query", "required": false,
            "description": description, "schema": schema,
        }));
    }
    let (status, response) = match op.answer {
        Answer::One(r) => ("200", json!({"description": "The resource", "content": json_content(single(r))})),
        Answer::Created(r) => ("201", json!({"description": "Created", "content": json_content(single(r))})),
        Answer::List(r) => {
            params.extend(pagination_params());
            ("200", json!({"description": "A page of the list", "content": json_content(page(r))}))
        }
        Answer::NoContent => ("204", json!({"description": "Done; no content"})),
        Answer::Plain(s) => ("200", json!({"description": "The answer", "content": json_content(schema_ref(s))})),
    };
    let mut v = json!({
        "operationId": op.id,
        "summary": op.summary,
        "tags": [tag],
        "responses": {
            status: response,
            "default": { "description": "An error", "content": json_content(schema_ref("ErrorResponse")) },
        },
    });
    if !params.is_empty() {
        v["parameters"] = Value::Array(params);
    }
    match op.body {
        Body::None => {}
        Body::Required(s) => v["requestBody"] = json!({ "required": true, "content": json_content(schema_ref(s)) }),
        Body::Optional(s) => v["requestBody"] = json!({ "required": false, "content": json_content(schema_ref(s)) }),
    }
    v
}

fn single(resource: &str) -> Value {
    json!({
        "type": "object",
        "required": ["data", "links"],
        "properties": { "data": resource_object(resource), "links": schema_ref("SelfLink") },
    })
}

fn page(resource: &str) -> Value {
    let mut item = resource_object(resource);
    item["properties"]["meta"] = json!({
        "type": "object",
        "properties": { "page": { "type": "object", "properties": { "cursor": { "type": "string" } } } },
    });
    json!({
        "type": "object",
        "required": ["links"],
        "properties": {
            "meta": { "type": "object", "properties": { "count": { "type": "integer", "minimum": 0 } } },
            "data": { "type": "array", "items": item },
            "links": schema_ref("PaginationLinks"),
        },
    })
}

fn resource_object(resource: &str) -> Value {
    json!({
        "type": "object",
        "required": ["type", "id", "attributes", "links"],
        "properties": {
            "type": { "type": "string" },
            "id": schema_ref("ULID"),
            "attributes": schema_ref(resource),
            "links": schema_ref("SelfLink"),
        },
    })
}

fn pagination_params() -> Vec<Value> {
    let size = json!({"type": "integer", "minimum": 1, "maximum": crate::store::page::MAX_PAGE_SIZE});
    vec![
        json!({"name": "page[first]", "in": "query", "description": "Size of the page, from the start", "schema": size}),
        json!({"name": "page[last]", "in": "query", "description": "Size of the page, from the end", "schema": size}),
        json!({"name": "page[after]", "in": "query", "description": "Items after this cursor", "schema": schema_ref("ULID")}),
        json!({"name": "page[before]", "in": "query", "description": "Items before this cursor", "schema": schema_ref("ULID")}),
        json!({
            "name": "count", "in": "query",
            "description": "Include the total count (`true`, the default), leave it out (`false`), or answer only the count (`only`)",
            "schema": { "type": "string", "enum": ["true", "false", "only"] },
        }),
    ]
}

/// The OpenAPI 3.1 document for `ops`, served from `server` (the public base URL).
pub fn document(ops: &[(&'static str, Op)], server: &str) -> Value {
    let mut paths = Map::new();
    for (tag, op) in ops {
        let item = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        item[op.method.as_str().to_ascii_lowercase()] = operation(tag, op);
    }
    let mut tags: Vec<&str> = ops.iter().map(|(t, _)| *t).collect();
    tags.dedup();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Matrix Authentication Service admin API (appliance)",
            "description": "The admin API of appliance, shaped as MAS's. Every operation needs an access \
                token (OAuth 2.0 or personal) whose session has the `urn:mas:admin` scope.",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "servers": [{ "url": format!("{}{}", server.trim_end_matches('/'), PREFIX) }],
        "security": [{ "bearer": [] }],
        "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "paths": paths,
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }, "schemas": schemas() },
    })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
}

/// The component schemas: resources' attributes, request bodies, envelopes.
fn schemas() -> Value {
    let time = || json!({"type": "string", "format": "date-time"});
    let opt_time = || json!({"type": ["string", "null"], "format": "date-time"});
    let opt_str = || json!({"type": ["string", "null"]});
    let opt_id = || json!({"oneOf": [schema_ref("ULID"), {"type": "null"}]});
    let strings = || json!({"type": "array", "items": {"type": "string"}});
    let session = |extra: Value| {
        let mut p = json!({
            "created_at": time(), "finished_at": opt_time(), "user_agent": opt_str(),
            "last_active_at": opt_time(), "last_active_ip": opt_str(),
        });
        p.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        p
    };
    json!({
        "ULID": { "type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$", "description": "A ULID" },
        "SelfLink": object(&["self"], json!({ "self": {"type": "string"} })),
        "PaginationLinks": object(&["self"], json!({
            "self": {"type": "string"}, "first": {"type": "string"}, "last": {"type": "string"},
            "next": {"type": "string"}, "prev": {"type": "string"},
        })),
        "ErrorResponse": object(&["errors"], json!({
            "errors": { "type": "array", "items": object(&["title"], json!({"title": {"type": "string"}})) },
        })),
        "SiteConfig": object(&["server_name"], json!({
            "server_name": {"type": "string"},
            "password_login_enabled": {"type": "boolean"},
            "password_registration_enabled": {"type": "boolean"},
            "password_registration_email_required": {"type": "boolean"},
            "registration_token_required": {"type": "boolean"},
            "email_change_allowed": {"type": "boolean"},
            "displayname_change_allowed": {"type": "boolean"},
            "password_change_allowed": {"type": "boolean"},
            "account_recovery_allowed": {"type": "boolean"},
            "account_deactivation_allowed": {"type": "boolean"},
            "captcha_enabled": {"type": "boolean"},
            "minimum_password_complexity": {"type": "integer"},
        })),
        "Version": object(&["version"], json!({ "version": {"type": "string"} })),
        "User": object(&["username", "created_at", "admin"], json!({
            "username": {"type": "string"}, "created_at": time(), "locked_at": opt_time(),
            "deactivated_at": opt_time(), "admin": {"type": "boolean"}, "legacy_guest": {"type": "boolean"},
        })),
        "UserSecondFactors": object(&["user_id", "has_second_factor", "totp", "recovery_codes_left", "passkeys"], json!({
            "user_id": schema_ref("ULID"), "has_second_factor": {"type": "boolean"}, "totp": {"type": "boolean"},
            "recovery_codes_left": {"type": "integer"}, "passkeys": {"type": "integer"},
        })),
        "AddUserRequest": object(&["username"], json!({
            "username": {"type": "string"},
            "skip_homeserver_check": {"type": "boolean", "description": "Do not ask the homeserver whether the username is free"},
            "displayname": {"type": "string"},
        })),
        "SetPasswordRequest": object(&["password"], json!({
            "password": {"type": "string"}, "skip_password_check": {"type": "boolean"},
        })),
        "SetAdminRequest": object(&["admin"], json!({ "admin": {"type": "boolean"} })),
        "DeactivateRequest": object(&[], json!({
            "skip_erase": {"type": "boolean", "description": "Keep the user's data on the homeserver"},
        })),
        "Empty": object(&[], json!({})),
        "UserEmail": object(&["created_at", "user_id", "email"], json!({
            "created_at": time(), "user_id": schema_ref("ULID"), "email": {"type": "string", "format": "email"},
        })),
        "AddUserEmailRequest": object(&["user_id", "email"], json!({
            "user_id": schema_ref("ULID"), "email": {"type": "string", "format": "email"},
        })),
        "UserSession": object(&["created_at", "user_id"], session(json!({ "user_id": schema_ref("ULID") }))),
        "CompatSession": object(&["created_at", "user_id"], session(json!({
            "user_id": schema_ref("ULID"), "device_id": opt_str(), "user_session_id": opt_id(),
            "redirect_uri": opt_str(), "human_name": opt_str(),
        }))),
        "OAuth2Session": object(&["created_at", "client_id", "scope"], session(json!({
            "user_id": opt_id(), "user_session_id": opt_id(), "client_id": schema_ref("ULID"),
            "scope": {"type": "string"}, "human_name": opt_str(),
        }))),
        "OAuth2Client": object(&["client_id", "created_at"], json!({
            "client_id": {"type": "string"}, "is_static": {"type": "boolean"}, "created_at": time(),
            "client_name": opt_str(), "client_uri": opt_str(), "logo_uri": opt_str(), "policy_uri": opt_str(),
            "tos_uri": opt_str(), "redirect_uris": strings(), "grant_types": strings(), "response_types": strings(),
            "token_endpoint_auth_method": {"type": "string"}, "application_type": opt_str(), "contacts": strings(),
        })),
        "UserRegistrationToken": object(&["token", "valid", "times_used", "created_at"], json!({
            "token": {"type": "string"}, "valid": {"type": "boolean"},
            "usage_limit": {"type": ["integer", "null"], "minimum": 0}, "times_used": {"type": "integer", "minimum": 0},
            "created_at": time(), "last_used_at": opt_time(), "expires_at": opt_time(), "revoked_at": opt_time(),
        })),
        "AddUserRegistrationTokenRequest": object(&[], json!({
            "token": {"type": "string", "description": "Chosen token; random when absent"},
            "usage_limit": {"type": "integer", "minimum": 1}, "expires_at": time(),
        })),
        "UpdateUserRegistrationTokenRequest": object(&[], json!({
            "usage_limit": {"type": ["integer", "null"], "minimum": 1}, "expires_at": opt_time(),
        })),
        "UpstreamOAuthProvider": object(&["created_at", "registration_token_required"], json!({
            "issuer": opt_str(), "human_name": opt_str(), "brand_name": opt_str(), "created_at": time(),
            "disabled_at": opt_time(), "registration_token_required": {"type": "boolean"},
        })),
        "UpstreamOAuthLink": object(&["created_at", "provider_id", "subject"], json!({
            "created_at": time(), "provider_id": schema_ref("ULID"), "subject": {"type": "string"},
            "user_id": opt_id(), "human_account_name": opt_str(),
        })),
        "AddUpstreamOAuthLinkRequest": object(&["user_id", "provider_id", "subject"], json!({
            "user_id": schema_ref("ULID"), "provider_id": schema_ref("ULID"), "subject": {"type": "string"},
            "human_account_name": {"type": "string"},
        })),
        "PersonalSession": object(&["created_at", "actor_user_id", "human_name", "scope"], json!({
            "created_at": time(), "revoked_at": opt_time(), "owner_user_id": opt_id(), "owner_client_id": opt_str(),
            "actor_user_id": schema_ref("ULID"), "human_name": {"type": "string"}, "scope": {"type": "string"},
            "last_active_at": opt_time(), "last_active_ip": opt_str(), "expires_at": opt_time(),
            "access_token": {"type": "string", "description": "Only in the answer that issued the token"},
        })),
        "AddPersonalSessionRequest": object(&["actor_user_id", "human_name", "scope"], json!({
            "actor_user_id": schema_ref("ULID"), "human_name": {"type": "string", "minLength": 1, "maxLength": 255},
            "scope": {"type": "string"}, "expires_in": {"type": "integer", "minimum": 1},
        })),
        "RegeneratePersonalSessionRequest": object(&[], json!({ "expires_in": {"type": "integer", "minimum": 1} })),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_operation_ids_are_unique() {
        let ops = super::super::routes().into_parts().1;
        let doc = document(&ops, "https://auth.example.org/");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for r in &found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("odd $ref {r}"));
            assert!(schemas.contains_key(name), "{r} is not defined");
        }
        let ids: HashSet<&str> = ops.iter().map(|(_, op)| op.id).collect();
        assert_eq!(ids.len(), ops.len(), "operation ids repeat");
        assert_eq!(doc["servers"][0]["url"], "https://auth.example.org/api/admin/v1");
    }
}
