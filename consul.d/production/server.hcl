# Consul SERVER agent for production: one of three (bootstrap_expect = 3).
# Target: Consul 1.8 and later (the project targets the 1.8 API and CLI; the
# UI is turned on with `ui = true`, which 1.8 understands).
#
# Start it with:   consul agent -config-file=/etc/consul.d/server.hcl
# Check it with:   consul validate /etc/consul.d/server.hcl
#
# Every value marked REPLACE must be set for your environment before use.
# See docs/deploy.md ("Consul in production") for the full procedure.

datacenter         = "dc1"
primary_datacenter = "dc1" # ACLs are authoritative in this datacenter
data_dir           = "/opt/consul/data"
log_level          = "INFO"

server           = true
bootstrap_expect = 3

# The built-in web UI, served on the HTTP port. Consul 1.8 syntax (no ui_config block).
ui = true

# Gossip and RPC on the machine's private address; the HTTP API (and UI) on
# loopback and the private address. Never expose 8500 to the internet.
bind_addr   = "{{ GetPrivateIP }}"
client_addr = "127.0.0.1 {{ GetPrivateIP }}"

# REPLACE: the three servers' addresses (DNS names or IPs), or a cloud auto-join
# string such as "provider=aws tag_key=consul-role tag_value=server".
retry_join = ["consul-server-1", "consul-server-2", "consul-server-3"]

# REPLACE: gossip encryption key, the output of `consul keygen`, identical on every
# agent (servers and clients) of the datacenter. The value below is a PLACEHOLDER: it
# is valid base64 only so that `consul validate` accepts this file, and it decodes to
# the text "REPLACE-ME-run-consul-keygen-now". Never run a cluster with it.
encrypt                 = "UkVQTEFDRS1NRS1ydW4tY29uc3VsLWtleWdlbi1ub3c="
encrypt_verify_incoming = true
encrypt_verify_outgoing = true

# ACLs: deny by default. Bootstrap once with `consul acl bootstrap`, then give every
# agent its agent token with `consul acl set-agent-token agent <token>`: token
# persistence keeps it across restarts, so no token is ever written in this file.
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
}

# TLS for RPC and HTTPS: fill in and uncomment once you have a CA
# (`consul tls ca create`, `consul tls cert create -server -dc dc1`).
# verify_incoming        = false # HTTPS clients are not asked for certificates
# verify_incoming_rpc    = true
# verify_outgoing        = true
# verify_server_hostname = true
# ca_file                = "/etc/consul.d/tls/consul-agent-ca.pem"
# cert_file              = "/etc/consul.d/tls/dc1-server-consul-0.pem"
# key_file               = "/etc/consul.d/tls/dc1-server-consul-0-key.pem"
# auto_encrypt {
#   allow_tls = true # servers hand client agents their certificates
# }
# ports {
#   https = 8501
# }

performance {
  raft_multiplier = 1 # production timing (the default 5 is for small dev machines)
}

autopilot {
  cleanup_dead_servers = true
}

# A server that stops must not leave the raft peer set: it rejoins on restart.
leave_on_terminate     = false
skip_leave_on_interrupt = true

disable_update_check = true
enable_script_checks = false
