/** The fingerprint JSON Schema's id (and version): in each fingerprint, and the schema's `$id`. */
export const FINGERPRINT_SCHEMA_ID = 'https://agentcell.dev/schemas/fingerprint.v1.json';
