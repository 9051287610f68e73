package events

// Observer is told what a Bus does with its events, for counters and
// metrics (WithObserver). Its methods run synchronously on the goroutine
// that does the thing, so they must be quick, must not block and must not
// call the bus; they may run concurrently with each other.
type Observer interface {
	// Published is called once for every event that Publish accepts (one
	// not of type TypeOverflow, on a bus not closed), on the publisher's
	// goroutine, before the event is queued, whether or not anyone
	// subscribed to topic.
	Published(topic string, e Event)
	// Delivered is called on a subscriber's goroutine right before e is
	// handed to it, overflow events included: once a handler has run, its
	// event has been counted. An overflow event handed to a subscriber of
	// On with a handler that takes paths counts too, though that handler
	// is not called for it.
	Delivered(e Event)
	// Dropped is called when e is dropped for a subscriber whose queue is
	// full, once for each subscriber that lost it, on the publisher's
	// goroutine. Events that a Transport lost (Gap) are not.
	Dropped(e Event)
}

// GapObserver is an Observer that is also told of every Gap, on the
// goroutine that calls it, whether or not anyone subscribed: for state
// kept from the events, which must be rebuilt once some were lost.
type GapObserver interface {
	Observer
	Gap(n uint64)
}
