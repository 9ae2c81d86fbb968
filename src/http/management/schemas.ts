/**
 * TypeBox schemas shared by the management routes. Response schemas double as an allow-list:
 * fastify serializes only the properties named here, so a secret can never leak into a
 * response whose schema does not name it.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'machine-readable error kind, e.g. INVALID_ARGUMENT, DEVICE_NOT_FOUND' }),
    message: Type.String(),
    field: Type.Optional(Type.String({ description: 'the request field at fault, when there is one' })),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { $id: 'Error' },
);
export type ErrorBody = Static<typeof ErrorBody>;

/** Error responses every /api route can give; merged into each route's `response`. */
export const errorResponses = {
  400: Type.Ref('Error'),
  401: Type.Ref('Error'),
  404: Type.Ref('Error'),
} as const;

export const NodeTypeSchema = Type.Union([Type.Literal('DEVICE'), Type.Literal('GATEWAY'), Type.Literal('SUB_DEVICE')]);
export const DeviceStatusSchema = Type.Union([
  Type.Literal('UNACTIVE'),
  Type.Literal('ONLINE'),
  Type.Literal('OFFLINE'),
  Type.Literal('DISABLE'),
]);

export const PagingQuery = {
  offset: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
};

export function pageOf<T extends TSchema>(item: T) {
  return Type.Object({
    items: Type.Array(item),
    total: Type.Integer(),
    offset: Type.Integer(),
    limit: Type.Integer(),
  });
}

export const ProductKeyParams = Type.Object({ productKey: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
export const DeviceParams = Type.Object(
  { productKey: Type.String({ maxLength: 64 }), deviceName: Type.String({ maxLength: 128 }) },
  { additionalProperties: false },
);
