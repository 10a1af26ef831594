# For the Packer integrations registry; the component docs are generated
# from docs/ (make packer-generate).
integration {
  name        = "imgforge"
  description = "Builds imgforge's per-role machine images (OCI, raw, qcow2, ISO)."
  identifier  = "packer/imgforge/imgforge"
  component {
    type = "builder"
    name = "imgforge"
    slug = "imgforge"
  }
}
