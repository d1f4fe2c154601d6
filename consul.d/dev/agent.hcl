# The local development agent that `npm start` runs (as `consul agent -dev -ui -config-dir consul.d/dev`).
# -dev keeps everything in memory; data_dir is here only so that `consul validate` accepts the folder.
datacenter           = "local"
data_dir             = ".run/consul"
log_level            = "WARN"
disable_update_check = true
enable_script_checks = false
ui                   = true
