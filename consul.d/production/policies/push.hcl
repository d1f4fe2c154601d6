# ACL policy for the token of push (WebSocket nodes): its CONSUL_HTTP_TOKEN.
# Not agent configuration: load it with
#   consul acl policy create -name push-cluster-push -rules @consul.d/production/policies/push.hcl
#   consul acl token create -description "push-cluster push" -policy-name push-cluster-push
# See docs/deploy.md ("ACL tokens").

# Register and deregister its own instances (with their /health checks) under the name "push".
service "push" {
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
