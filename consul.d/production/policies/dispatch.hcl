# ACL policy for the token of dispatch (routing, /v1/connect): its CONSUL_HTTP_TOKEN.
# Not agent configuration: load it with
#   consul acl policy create -name push-cluster-dispatch -rules @consul.d/production/policies/dispatch.hcl
#   consul acl token create -description "push-cluster dispatch" -policy-name push-cluster-dispatch
# See docs/deploy.md ("ACL tokens").

# Register and deregister its own instances (with their /health checks) under the name "dispatch".
service "dispatch" {
  policy = "write"
}

# Discovery: read the passing instances of every service (blocking queries on
# /v1/health/service/<name>?passing) and list the local agent's services.
service_prefix "" {
  policy = "read"
}

# Health and catalog answers are filtered by node: reading them needs node read.
node_prefix "" {
  policy = "read"
}

# Leader lock "evicted-node-unbind" (src/core/leader.ts): create, renew, read and destroy a
# session on the agent's node, bound to serfHealth and to the instance's own check.
# Tighten to session "<node name>" when every node name is known in advance.
session_prefix "" {
  policy = "write"
}

# The lock keys themselves: push-cluster/locks/evicted-node-unbind (acquire, release, read).
key_prefix "push-cluster/locks/" {
  policy = "write"
}
