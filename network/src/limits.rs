//! Connection limits by peer and by IP address, which `libp2p::connection_limits` does not
//! count: one connection per peer id (a restarted peer's new connection would otherwise sit
//! beside its dead one) and at most `per_ip` ([`PeerLimits::new`]) inbound connections from one
//! address, so one host cannot take every slot of the total limit with fresh peer ids.
//!
//! Both maps hold only live connections: an entry leaves with its last connection, so peers
//! that come and go with fresh identities leave nothing behind.

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::ConnectionEstablished, dummy,
};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The peer already has a connection.
    PeerConnected,
    /// The address already has `per_ip` inbound connections.
    TooManyFromAddress(IpAddr),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::PeerConnected => f.write_str("the peer already has a connection"),
            Refused::TooManyFromAddress(ip) => {
                write!(f, "too many inbound connections from {ip}")
            }
        }
    }
}

impl std::error::Error for Refused {}

/// The IP address of a multiaddr (its first `ip4` or `ip6` part).
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The behaviour.
pub struct PeerLimits {
    per_ip: usize,
    by_peer: BTreeMap<PeerId, BTreeSet<ConnectionId>>,
    inbound_by_ip: BTreeMap<IpAddr, BTreeSet<ConnectionId>>,
}

impl PeerLimits {
    /// At most one connection per peer and `per_ip` inbound connections per address.
    pub fn new(per_ip: usize) -> Self {
        Self {
            per_ip,
            by_peer: BTreeMap::new(),
            inbound_by_ip: BTreeMap::new(),
        }
    }

    /// Inbound connections from `ip` now.
    pub fn inbound_from(&self, ip: &IpAddr) -> usize {
        self.inbound_by_ip.get(ip).map_or(0, BTreeSet::len)
    }

    fn check_peer(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if self.by_peer.contains_key(peer) {
            return Err(ConnectionDenied::new(Refused::PeerConnected));
        }
        Ok(())
    }
}

fn remove<K: Ord>(map: &mut BTreeMap<K, BTreeSet<ConnectionId>>, key: K, id: ConnectionId) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl NetworkBehaviour for PeerLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        match ip_of(remote) {
            Some(ip) if self.inbound_from(&ip) >= self.per_ip => {
                Err(ConnectionDenied::new(Refused::TooManyFromAddress(ip)))
            }
            _ => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_peer(&peer)?;
        // Pending connections are not counted per address (the total pending limit bounds
        // them); the check is made again once the handshake is done.
        if let Some(ip) = ip_of(remote)
            && self.inbound_from(&ip) >= self.per_ip
        {
            return Err(ConnectionDenied::new(Refused::TooManyFromAddress(ip)));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_peer(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => {
                self.by_peer
                    .entry(peer_id)
                    .or_default()
                    .insert(connection_id);
                if let ConnectedPoint::Listener { send_back_addr, .. } = endpoint
                    && let Some(ip) = ip_of(send_back_addr)
                {
                    self.inbound_by_ip
                        .entry(ip)
                        .or_default()
                        .insert(connection_id);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => {
                remove(&mut self.by_peer, peer_id, connection_id);
                if let ConnectedPoint::Listener { send_back_addr, .. } = endpoint
                    && let Some(ip) = ip_of(send_back_addr)
                {
                    remove(&mut self.inbound_by_ip, ip, connection_id);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
