// Defaults the CLI shows in its help, in a module of their own so that the CLI's flag
// definitions do not load the controller: the webhook's process never runs it.

/** Default budget for Normal Events: a steady trickle of renewals is always recorded. */
export const DEFAULT_NORMAL_EVENTS_PER_SECOND = 5;
