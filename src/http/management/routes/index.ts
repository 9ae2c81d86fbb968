/**
 * Route plugins of the management API, mounted in this order under /api/v1 (so a plugin
 * registers `/products`, not `/api/v1/products`). Each resource owner appends its plugin
 * here: applications, topology, import, audit...
 */
import type { AppContext } from '../../../context.js';
import type { ManagementApp } from '../server.js';
import { applicationRoutes } from './applications.js';
import { deviceRoutes } from './devices.js';
import { deviceSecretRotationRoutes } from './device-secret-rotation.js';
import { deviceSlotRoutes } from './device-slots.js';
import { importRoutes } from './import.js';
import { productRoutes } from './products.js';
import { topologyRoutes } from './topology.js';
import { auditRoutes } from './audit.js';
import { keyRoutes } from './keys.js';
import { tokenRoutes } from './tokens.js';
import { bootstrapNotifyRoutes } from './bootstrap-notify.js';
import { nodeRoutes } from './nodes.js';
import { x509Routes } from './x509.js';
import { whoamiRoutes } from './whoami.js';
import { eventStreamRoutes } from './events.js';
import { diagnoseRoutes } from './diagnose.js';
import { healthRoutes } from './health.js';

export type ManagementRoutePlugin = (app: ManagementApp, ctx: AppContext) => Promise<void> | void;

export const MANAGEMENT_ROUTES: ManagementRoutePlugin[] = [productRoutes, deviceRoutes, deviceSecretRotationRoutes, importRoutes, topologyRoutes, applicationRoutes, tokenRoutes, auditRoutes, keyRoutes, bootstrapNotifyRoutes, deviceSlotRoutes, nodeRoutes, x509Routes, whoamiRoutes, eventStreamRoutes, diagnoseRoutes, healthRoutes];
