output "api_url" {
  description = "In-cluster URL of the Evently API."
  value       = module.evently.api_url
}

output "release_status" {
  description = "Status of the Helm release."
  value       = module.evently.release_status
}

output "admin_api_key" {
  description = "The admin API key (Authorization: Bearer); terraform output -raw admin_api_key."
  value       = module.evently.admin_api_key
  sensitive   = true
}
