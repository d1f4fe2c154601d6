# The local development agent that `npm start` runs (as `consul agent -dev -ui -config-dir consul.d/dev`).
# data_dir is here only so that `consul validate` accepts the folder: a dev agent does write its
# registrations there and load them on its next start, so the launcher and the tests pass each
# agent a fresh temporary -data-dir, which takes precedence over this value.
datacenter           = "local"
data_dir             = ".run/consul"
log_level            = "WARN"
disable_update_check = true
enable_script_checks = false
ui                   = true
