//! The client's IP: the peer address, or `X-Forwarded-For` when the peer is a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::AppState;
use crate::config::http::parse_cidr;

#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

fn in_cidr(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a.to_ipv4_mapped().is_some_and(|v4| in_cidr(IpAddr::V4(v4), net, len)),
        _ => false,
    }
}

pub fn is_trusted(trusted: &[String], ip: IpAddr) -> bool {
    trusted.iter().filter_map(|c| parse_cidr(c).ok()).any(|(net, len)| in_cidr(ip, net, len))
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let trusted = &state.config.http.trusted_proxies;
        if !is_trusted(trusted, peer) {
            return Ok(ClientIp(peer));
        }
        // Walk X-Forwarded-For from the right, skipping our own proxies.
        let forwarded: Vec<IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let ip = forwarded.iter().rev().find(|ip| !is_trusted(trusted, **ip)).copied();
        Ok(ClientIp(ip.or(forwarded.first().copied()).unwrap_or(peer)))
    }
}
