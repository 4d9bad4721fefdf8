import type { FastifyInstance } from 'fastify';

export interface RegisteredRoute {
  readonly method: string;
  readonly url: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route of the app (HEAD twins of GET routes included), as fastify registered them. */
    readonly registeredRoutes: readonly RegisteredRoute[];
  }
}

/**
 * Keep the list of the app's routes (an onRoute hook: it runs as each route is registered, never
 * per request), so the OpenAPI document can be checked against what really answers. Call it
 * before any route is added.
 */
export function recordRoutes(app: FastifyInstance): void {
  const routes: RegisteredRoute[] = [];
  app.decorate('registeredRoutes', routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
  });
}
