import { backendContract } from './contract/backend.js';

backendContract('podman');
