output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.this.name
}

output "namespace" {
  description = "Namespace Evently runs in."
  value       = helm_release.this.namespace
}

output "release_status" {
  description = "Status of the Helm release (deployed when the migration and rollout succeeded)."
  value       = helm_release.this.status
}

output "api_service_name" {
  description = "Name of the API Service (port 80), the same name the chart's helpers compute."
  value       = local.api_service
}

output "api_url" {
  description = "In-cluster URL of the API."
  value       = "http://${local.api_service}.${var.namespace}.svc"
}

output "connection_secret_name" {
  description = "Secret holding DATABASE_URL, AMQP_URL, ADMIN_API_KEY and ENCRYPTION_KEY."
  value       = local.secret_name
}

output "admin_api_key" {
  description = "The admin API key in the module's Secret (given or generated); null with existing_secret_name. Read it with terraform output -raw admin_api_key."
  value       = local.create_secret ? local.admin_api_key : null
  sensitive   = true
}

output "encryption_key" {
  description = "The encryption key in the module's Secret (given or generated); null with existing_secret_name. Back it up: terraform output -raw encryption_key."
  value       = local.create_secret ? local.encryption_key : null
  sensitive   = true
}
