# ACL policy for the token of auth (issues and verifies client tokens): its CONSUL_HTTP_TOKEN.
# Not agent configuration: load it with
#   consul acl policy create -name push-cluster-auth -rules @consul.d/production/policies/auth.hcl
#   consul acl token create -description "push-cluster auth" -policy-name push-cluster-auth
# See docs/deploy.md ("ACL tokens").

# Register and deregister its own instances (with their /health checks) under the name "auth".
service "auth" {
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
