# Consul CLIENT agent for production: one per machine (VM, Docker host or
# Kubernetes node) that runs push-cluster services. The services talk to it at
# CONSUL_HTTP_ADDR (127.0.0.1:8500 on a VM) and it runs their /health checks.
# Target: Consul 1.8 and later.
#
# Start it with:   consul agent -config-file=/etc/consul.d/client.hcl
# Check it with:   consul validate /etc/consul.d/client.hcl
#
# Every value marked REPLACE must be set for your environment before use.
# See docs/deploy.md ("Consul in production") for the full procedure.

datacenter         = "dc1"
primary_datacenter = "dc1"
data_dir           = "/opt/consul/data"
log_level          = "INFO"

server = false

# Gossip on the machine's private address. The HTTP API on loopback only: the
# services on this machine reach it at 127.0.0.1:8500. (On a Kubernetes node or a
# Docker host whose containers reach the agent at the host address, add that
# address: client_addr = "127.0.0.1 {{ GetPrivateIP }}".)
bind_addr   = "{{ GetPrivateIP }}"
client_addr = "127.0.0.1"

# REPLACE: the servers' addresses, or a cloud auto-join string.
retry_join = ["consul-server-1", "consul-server-2", "consul-server-3"]

# REPLACE: the same `consul keygen` key as the servers. PLACEHOLDER below (valid
# base64 only so that `consul validate` passes; it decodes to
# "REPLACE-ME-run-consul-keygen-now"). Never run a cluster with it.
encrypt                 = "UkVQTEFDRS1NRS1ydW4tY29uc3VsLWtleWdlbi1ub3c="
encrypt_verify_incoming = true
encrypt_verify_outgoing = true

# ACLs: deny by default. Set this agent's token once with
# `consul acl set-agent-token agent <token>` (persisted, never in this file). The
# services bring their own tokens (CONSUL_HTTP_TOKEN), see policies/.
acl {
  enabled                  = true
  default_policy           = "deny"
  down_policy              = "extend-cache"
  enable_token_persistence = true
}

# TLS: fill in and uncomment together with the servers' TLS settings.
# verify_outgoing        = true
# verify_server_hostname = true
# ca_file                = "/etc/consul.d/tls/consul-agent-ca.pem"
# auto_encrypt {
#   tls = true # get this agent's certificate from the servers
# }

# A client that stops leaves the cluster cleanly: its services and checks go with it.
leave_on_terminate = true

disable_update_check = true
enable_script_checks = false
